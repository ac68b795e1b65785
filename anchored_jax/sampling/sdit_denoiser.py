"""The sDiT as a segment denoiser, with classifier-free guidance per condition.

`make_sdit_denoiser` turns a merged `SDiT` and one identity into the `denoise_fn(x_CKHWC,
t_CK, cond_C)` the anchored sampler calls on a chunk of segments. The guidance branches a
setting needs (full; identity only; unconditional) run as one batched forward of up to 3C
segments, so guidance costs a wider batch rather than extra loop iterations.

Identity-embedding interpolation (an edit) mixes the embeddings of two sources inside the
model: the identity embedder is wrapped so that it returns `(1-w) e(a) + w e(b)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.diffusion.guidance import guided_output
from anchored_jax.models.sdit import SDiT
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_chunks import SegmentDenoiseFn

COND_KEYS = ("times_SK", "landmarks_SKLC", "frame_mask_SK")


class MixedIdentityEmbedder(nnx.Module):
    """Wraps an identity embedder: ignores its input and returns a lerp of two sources'."""

    def __init__(self, embedder: nnx.Module, identity_a: jax.Array, identity_b: jax.Array, w):
        self.embedder = embedder
        self.identity_a = identity_a
        self.identity_b = identity_b
        self.weight = w

    def __call__(self, identity_B: jax.Array) -> jax.Array:
        B = identity_B.shape[0]
        pair = jnp.stack([self.identity_a, self.identity_b])
        e_a, e_b = self.embedder(pair)
        mixed_D = (1.0 - self.weight) * e_a + self.weight * e_b
        return jnp.broadcast_to(mixed_D, (B,) + mixed_D.shape)


def make_sdit_denoiser(
    model: SDiT,
    identity: jax.Array,
    settings: SamplerSettings,
    *,
    identity_mix: tuple[jax.Array, Any] | None = None,
) -> SegmentDenoiseFn:
    """Returns `denoise_fn(x_CKHWC, t_CK, cond_C) -> out_CKHWC` (float32, guided).

    identity: one source image `[H, W, C]` (encoder mode) or vector `[E]` (embedding mode),
      shared by every segment.
    identity_mix: optional `(identity_b, w)`: condition on the interpolation of the two
      identities' embeddings instead (w=0 is `identity`, w=1 is `identity_b`).
    cond_C: a dict with `times_SK`, `landmarks_SKLC` and `frame_mask_SK` for the chunk; a
      condition the model does not use may be None or absent.
    """
    source = identity
    if identity_mix is not None:
        identity_b, weight = identity_mix
        model.identity_embedder = MixedIdentityEmbedder(
            model.identity_embedder, identity, identity_b, weight
        )
        # The embedder ignores its input now; what the model still reads of the source image
        # itself (identity_tokens, a linear patch embedding) gets the same mix of the images.
        source = (1.0 - weight) * identity + weight * identity_b
    branches = settings.guidance_branches
    n_branches = len(branches)
    # Condition drops per branch: (drop identity, drop landmarks).
    drops = {"full": (False, False), "identity": (False, True), "uncond": (True, True)}

    def denoise(x_CKHWC: jax.Array, t_CK: jax.Array, cond_C: dict) -> jax.Array:
        C = x_CKHWC.shape[0]

        def tile(a):
            # A condition the model has switched off (a class-label DiT's times and
            # landmarks) comes as None and stays None in every branch.
            if a is None or n_branches == 1:
                return a
            return jnp.concatenate([a] * n_branches, axis=0)

        drop_id_B = jnp.repeat(jnp.asarray([drops[b][0] for b in branches]), C)
        drop_lm_B = jnp.repeat(jnp.asarray([drops[b][1] for b in branches]), C)
        identity_B = jnp.broadcast_to(source, (C * n_branches,) + source.shape)
        out_BKHWC = model(
            tile(x_CKHWC),
            tile(t_CK),
            tile(cond_C.get("times_SK")),
            tile(cond_C.get("landmarks_SKLC")),
            identity_B,
            drop_identity_B=drop_id_B if n_branches > 1 else None,
            drop_landmarks_B=drop_lm_B if n_branches > 1 else None,
            frame_mask_BK=tile(cond_C.get("frame_mask_SK")),
        ).astype(jnp.float32)
        if n_branches == 1:
            return out_BKHWC
        outs = dict(zip(branches, jnp.split(out_BKHWC, n_branches, axis=0)))
        # A branch a setting does not need has scale 1 and cancels out of the formula.
        return guided_output(
            outs.get("uncond", outs["identity"]),
            outs["identity"],
            outs["full"],
            settings.identity_scale,
            settings.landmark_scale,
        )

    return denoise
