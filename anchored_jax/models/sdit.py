"""The sequence-DiT (sDiT): denoises K frames sampled at arbitrary times, given as guidance.

Frames are patchified into `B, K*N, D` tokens. Each frame carries its own conditioning
vector `c_BKD = t_emb + frame_time_emb + landmark_emb + identity_emb`, which drives
adaLN-Zero blocks; identity and landmarks can be swapped for learned nulls (condition
dropout in training, classifier-free guidance at sampling). With `identity_tokens`, the
source image's patch embedding is also added to every frame's tokens, position by position,
so copying what does not move is one addition away; with `landmark_tokens`, each frame's
landmark map is added the same way, so every patch sees where the driving landmarks are. The
trunk (patch embed,
timestep embedder, blocks, final layer) is DiT's; see DESIGN.md, section "sDiT".

The DiT-parity path: `identity="class_label"` (DiT's class table, whose extra row is the
null label) with `frame_time_condition=False`, `landmark_condition=False` and
`time_in_tokens=False` leaves `c = t_emb + class_emb`; on one frame this is exactly DiT,
which is how `interop/dit_import.py` checks an imported checkpoint.
"""

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.embeddings import (
    COND_MLP_INIT,
    FrameTimeEmbedder,
    LandmarkEmbedder,
    LandmarkMapEmbedder,
    PatchEmbed,
    TimestepEmbedder,
    sincos_2d_positions,
)
from anchored_jax.models.identity_encoder import IdentityEncoder, IdentityProjection
from anchored_jax.models.logical_axes import param_init
from anchored_jax.models.remat import apply_remat
from anchored_jax.models.sdit_block import FinalLayer, SDiTBlock
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.parallel.logical_sharding import constrain

# Logical names of the token activations between blocks (mapped to mesh axes by the rules).
TOKENS_BLD = ("batch", "length", "act_embed")

# Attributes that are ours rather than DiT's trunk; `count_params` can leave them out.
# (In class_label mode `identity_embedder` is DiT's label table, still not trunk.)
CONDITIONING_ATTRS = (
    "frame_time_embedder",
    "landmark_embedder",
    "identity_embedder",
    "identity_patch_embed",
    "landmark_map_embedder",
    "null_identity",
    "null_landmarks",
)


class ClassLabelEmbedder(nnx.Module):
    """Class label -> D, DiT's LabelEmbedder: a table with one extra row, the null label."""

    def __init__(self, config: SDiTConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.dtype = dtype
        init = param_init(COND_MLP_INIT, "cond_in", "embed")
        self.embedding_table = nnx.Param(
            init(rngs.params(), (config.num_classes + 1, config.width), param_dtype)
        )

    def __call__(self, labels_B: jax.Array) -> jax.Array:
        return jnp.take(self.embedding_table[...], labels_B, axis=0).astype(self.dtype)


class SDiT(nnx.Module):
    """Sequence-DiT. Call with a clip, per-frame steps/times/landmarks and an identity."""

    def __init__(self, config: SDiTConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dtype = dtype

        self.patch_embed = PatchEmbed(config, **kw)
        # The source image's own patches, added to every frame's tokens (identity_tokens).
        self.identity_patch_embed = PatchEmbed(config, **kw) if config.identity_tokens else None
        self.t_embedder = TimestepEmbedder(config, **kw)
        # A switched-off condition has no parameters at all (None), so nothing unused is saved.
        self.frame_time_embedder = (
            FrameTimeEmbedder(config, **kw) if config.frame_time_condition else None
        )
        self.landmark_embedder = (
            LandmarkEmbedder(config, **kw) if config.landmark_condition else None
        )
        self.landmark_map_embedder = (
            LandmarkMapEmbedder(config, **kw) if config.landmark_tokens else None
        )
        identity_cls = {
            "encoder": IdentityEncoder,
            "embedding": IdentityProjection,
            "class_label": ClassLabelEmbedder,
        }[config.identity]
        self.identity_embedder = identity_cls(config, **kw)
        null_init = param_init(COND_MLP_INIT, "embed")
        # class_label drops to the table's own null row instead.
        self.null_identity = (
            nnx.Param(null_init(rngs.params(), (config.width,), param_dtype))
            if config.identity != "class_label"
            else None
        )
        self.null_landmarks = (
            nnx.Param(null_init(rngs.params(), (config.width,), param_dtype))
            if config.landmark_condition
            else None
        )

        if config.scan_layers:
            # One block whose every parameter has a leading `layers` axis of size depth.
            @nnx.split_rngs(splits=config.depth)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def make_blocks(rngs):
                return SDiTBlock(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

            self.blocks = make_blocks(rngs)
        else:
            self.blocks = nnx.List([SDiTBlock(config, **kw) for _ in range(config.depth)])
        self.final_layer = FinalLayer(config, **kw)

    # ------------------------------------------------------------------ checks
    def _check_inputs(self, x, t, times, landmarks, identity, drop_id, drop_lm, frame_mask):
        cfg = self.config
        if x.ndim != 5:
            raise ValueError(f"x_BKHWC: expected 5 axes [B, K, H, W, C], got shape {x.shape}")
        B, K, H, W, C = x.shape
        if K > cfg.max_frames:
            raise ValueError(f"clip has K={K} frames but model.max_frames is {cfg.max_frames}")
        if (H, W, C) != (cfg.image_size, cfg.image_size, cfg.in_channels):
            raise ValueError(
                f"x_BKHWC: frames are {H}x{W}x{C} but the model expects "
                f"{cfg.image_size}x{cfg.image_size}x{cfg.in_channels} "
                "(model.image_size, model.in_channels)"
            )
        expected = {
            "t_BK": (t, (B, K)),
            "times_BK": (times, (B, K)),
            "landmarks_BKLC": (landmarks, (B, K, cfg.num_landmarks, cfg.landmark_dim)),
            "drop_identity_B": (drop_id, (B,)),
            "drop_landmarks_B": (drop_lm, (B,)),
            "frame_mask_BK": (frame_mask, (B, K)),
        }
        for name, value, used in (
            ("times_BK", times, cfg.frame_time_condition),
            ("landmarks_BKLC", landmarks, cfg.landmark_condition),
        ):
            if used and value is None:
                raise ValueError(f"{name}: required by the model config, got None")
        if cfg.identity == "encoder":
            expected["identity_BHWC"] = (identity, (B, H, W, C))
        elif cfg.identity == "embedding":
            expected["identity_BE"] = (identity, (B, cfg.identity_embed_dim))
        else:
            expected["labels_B"] = (identity, (B,))
        for name, (value, shape) in expected.items():
            if value is not None and tuple(jnp.shape(value)) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(jnp.shape(value))}")

    # ------------------------------------------------------------------ pieces
    def conditioning(self, t_BK, times_BK, landmarks_BKLC, identity, drop_id_B, drop_lm_B):
        """Per-frame conditioning `c_BKD` and the frame-time embedding `time_BKD` (or None)."""
        # Summed left to right, t + time + landmarks + identity, whichever are switched on.
        c_BKD = self.t_embedder(t_BK)
        time_BKD = None
        if self.frame_time_embedder is not None:
            time_BKD = self.frame_time_embedder(times_BK)
            c_BKD = c_BKD + time_BKD
        if self.landmark_embedder is not None:
            landmark_BKD = self.landmark_embedder(landmarks_BKLC)
            if drop_lm_B is not None:
                drop_lm_B = jnp.asarray(drop_lm_B, bool)
                null = self.null_landmarks[...].astype(landmark_BKD.dtype)
                landmark_BKD = jnp.where(drop_lm_B[:, None, None], null, landmark_BKD)
            c_BKD = c_BKD + landmark_BKD
        if self.config.identity == "class_label":
            labels_B = jnp.asarray(identity, jnp.int32)
            if drop_id_B is not None:
                labels_B = jnp.where(
                    jnp.asarray(drop_id_B, bool), self.config.num_classes, labels_B
                )
            identity_BD = self.identity_embedder(labels_B)
        else:
            identity_BD = self.identity_embedder(identity)
            if drop_id_B is not None:
                drop_id_B = jnp.asarray(drop_id_B, bool)
                null = self.null_identity[...].astype(identity_BD.dtype)
                identity_BD = jnp.where(drop_id_B[:, None], null, identity_BD)
        c_BKD = c_BKD + identity_BD[:, None]
        return c_BKD, time_BKD

    def run_blocks(self, x_BLD, c_BKD, frame_mask_BK):
        """All blocks, scanned over the stacked `layers` axis or as a python loop."""
        policy = self.config.remat_policy
        if self.config.scan_layers:
            graphdef, stacked_state = nnx.split(self.blocks)

            def body(x_BLD, layer_state):
                x_BLD = nnx.merge(graphdef, layer_state)(x_BLD, c_BKD, frame_mask_BK)
                return constrain(x_BLD, TOKENS_BLD), None

            body = apply_remat(body, policy, prevent_cse=False)
            x_BLD, _ = jax.lax.scan(body, x_BLD, stacked_state)
            return x_BLD
        for block in self.blocks:
            graphdef, state = nnx.split(block)

            def apply(state, x_BLD, c_BKD, graphdef=graphdef):
                return nnx.merge(graphdef, state)(x_BLD, c_BKD, frame_mask_BK)

            x_BLD = constrain(apply_remat(apply, policy)(state, x_BLD, c_BKD), TOKENS_BLD)
        return x_BLD

    # ------------------------------------------------------------------ forward
    def __call__(
        self,
        x_BKHWC,
        t_BK,
        times_BK,
        landmarks_BKLC,
        identity,
        *,
        drop_identity_B=None,
        drop_landmarks_B=None,
        frame_mask_BK=None,
    ) -> jax.Array:
        """Returns the prediction `out_BKHWC'` (out_channels) in float32.

        Args:
          x_BKHWC: noisy clip, K in 1..max_frames.
          t_BK: diffusion step of each frame, int or float in [0, 1000).
          times_BK: frame time in seconds relative to the anchor (any sign or size); may be
            None when `frame_time_condition` is off.
          landmarks_BKLC: driving landmarks per frame; None allowed when switched off.
          identity: `identity_BHWC` (encoder mode), `identity_BE` (embedding mode) or int
            `labels_B` (class_label mode; dropping it selects the null label).
          drop_identity_B, drop_landmarks_B: True -> use that condition's learned null.
          frame_mask_BK: True = real frame; padded frames are hidden from attention as keys.
        """
        self._check_inputs(
            x_BKHWC, t_BK, times_BK, landmarks_BKLC, identity,
            drop_identity_B, drop_landmarks_B, frame_mask_BK,
        )  # fmt: skip
        cfg = self.config
        K = x_BKHWC.shape[1]
        c_BKD, time_BKD = self.conditioning(
            t_BK, times_BK, landmarks_BKLC, identity, drop_identity_B, drop_landmarks_B
        )
        pos_ND = jnp.asarray(sincos_2d_positions(cfg.width, cfg.grid_size), self.dtype)
        tokens_BKND = self.patch_embed(x_BKHWC) + pos_ND
        if cfg.time_in_tokens:
            tokens_BKND = tokens_BKND + time_BKD[:, :, None]
        if self.identity_patch_embed is not None:
            source_BND = self.identity_patch_embed(jnp.asarray(identity)[:, None])[:, 0]
            if drop_identity_B is not None:
                keep_B = ~jnp.asarray(drop_identity_B, bool)
                source_BND = source_BND * keep_B[:, None, None].astype(source_BND.dtype)
            tokens_BKND = tokens_BKND + source_BND[:, None]
        if self.landmark_map_embedder is not None:
            map_BKND = self.landmark_map_embedder(landmarks_BKLC)
            if drop_landmarks_B is not None:
                keep_B = ~jnp.asarray(drop_landmarks_B, bool)
                map_BKND = map_BKND * keep_B[:, None, None, None].astype(map_BKND.dtype)
            tokens_BKND = tokens_BKND + map_BKND
        tokens_BLD = einops.rearrange(tokens_BKND, "b k n d -> b (k n) d")
        if frame_mask_BK is not None:
            frame_mask_BK = jnp.asarray(frame_mask_BK, bool)

        tokens_BLD = self.run_blocks(constrain(tokens_BLD, TOKENS_BLD), c_BKD, frame_mask_BK)
        out_BLP = self.final_layer(tokens_BLD, c_BKD)
        p = cfg.patch_size
        out_BKHWC = einops.rearrange(
            out_BLP,
            "b (k h w) (p1 p2 c) -> b k (h p1) (w p2) c",
            k=K, h=cfg.grid_size, p1=p, p2=p,
        )  # fmt: skip
        return out_BKHWC.astype(jnp.float32)
