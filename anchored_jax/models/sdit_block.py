"""adaLN-Zero transformer block and final layer of the sDiT, with per-frame conditioning.

As DiT's DiTBlock/FinalLayer (Peebles & Xie 2023, Sec. 3.2): SiLU -> Linear gives
shift/scale/gate for attention and MLP, zero-initialised so each block starts as the
identity. Here the conditioning `c_BKD` is per frame (each frame has its own diffusion
step, time and landmarks), so a frame's modulation is broadcast over its N tokens.

`attention="factorized"` runs spatial attention (within a frame) and then temporal
attention (across frames at each patch) in one block. The temporal branch reuses the
attention modulation and gate, and its output projection starts at zero, so a fresh
factorized model treats every frame independently, like a per-frame DiT.
"""

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.attention import (
    SelfAttention,
    group_frames,
    tag_attention_out,
    ungroup_frames,
)
from anchored_jax.models.dense import Dense, zeros

LN_EPS = 1e-6  # DiT: LayerNorm(elementwise_affine=False, eps=1e-6)


def layer_norm(x: jax.Array) -> jax.Array:
    """Affine-free LayerNorm over the last axis, statistics in float32."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + LN_EPS)).astype(x.dtype)


def per_frame(mod_BKD: jax.Array, x_BLD: jax.Array) -> jax.Array:
    """Broadcasts a per-frame vector over that frame's tokens: `B, K, D` -> `B, K*N, D`."""
    K = mod_BKD.shape[1]
    n = x_BLD.shape[1] // K
    return einops.repeat(mod_BKD, "b k d -> b (k n) d", n=n)


def modulate(x_BLD, shift_BKD, scale_BKD):
    """DiT's modulate, x * (1 + scale) + shift, with per-frame shift and scale."""
    return x_BLD * (1 + per_frame(scale_BKD, x_BLD)) + per_frame(shift_BKD, x_BLD)


class Mlp(nnx.Module):
    """D -> mlp_ratio*D -> D with tanh-GELU (DiT: approx_gelu = GELU(approximate="tanh"))."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = Dense(config.width, config.mlp_hidden, ("embed", "mlp"), **kw)
        self.fc2 = Dense(config.mlp_hidden, config.width, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


class SDiTBlock(nnx.Module):
    """One adaLN-Zero block over `tokens_BLD` (L = K*N) conditioned on `c_BKD`."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.factorized = config.attention == "factorized"
        self.num_patches = config.num_patches
        self.attn = SelfAttention(config, **kw)
        if self.factorized:
            self.temporal_attn = SelfAttention(config, zero_out=True, **kw)
        self.mlp = Mlp(config, **kw)
        self.adaln = Dense(
            config.width, 6 * config.width, ("embed", "adaln"), kernel_init=zeros, **kw
        )

    def __call__(self, x_BLD, c_BKD, frame_mask_BK=None):
        mods = jnp.split(self.adaln(jax.nn.silu(c_BKD)), 6, axis=-1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods

        def attention_branch(x_BLD, attend):
            h_BLD = modulate(layer_norm(x_BLD), shift_msa, scale_msa)
            return x_BLD + per_frame(gate_msa, x_BLD) * tag_attention_out(attend(h_BLD))

        if self.factorized:
            x_BLD = attention_branch(x_BLD, self._spatial)
            x_BLD = attention_branch(x_BLD, lambda h: self._temporal(h, frame_mask_BK))
        else:
            x_BLD = attention_branch(x_BLD, lambda h: self._joint(h, frame_mask_BK))

        h_BLD = modulate(layer_norm(x_BLD), shift_mlp, scale_mlp)
        return x_BLD + per_frame(gate_mlp, x_BLD) * self.mlp(h_BLD)

    def _joint(self, h_BLD, frame_mask_BK):
        """All K*N tokens attend to each other; padded frames are hidden as keys."""
        key_mask_BL = None
        if frame_mask_BK is not None:
            key_mask_BL = einops.repeat(frame_mask_BK, "b k -> b (k n)", n=self.num_patches)
        return self.attn(h_BLD, key_mask_BL)

    def _num_frames(self, h_BLD) -> int:
        return h_BLD.shape[1] // self.num_patches

    def _spatial(self, h_BLD):
        """Tokens attend within their own frame; every token there is real, so no mask."""
        B, K = h_BLD.shape[0], self._num_frames(h_BLD)
        return ungroup_frames(self.attn(group_frames(h_BLD, K, "spatial")), B, "spatial")

    def _temporal(self, h_BLD, frame_mask_BK):
        """Each patch position attends across frames; padded frames are hidden as keys."""
        B, K = h_BLD.shape[0], self._num_frames(h_BLD)
        key_mask = None
        if frame_mask_BK is not None:
            key_mask = einops.repeat(frame_mask_BK, "b k -> (b n) k", n=self.num_patches)
        h_GKD = self.temporal_attn(group_frames(h_BLD, K, "temporal"), key_mask)
        return ungroup_frames(h_GKD, B, "temporal")


class FinalLayer(nnx.Module):
    """adaLN (shift, scale) then Linear to p*p*out_channels per token; all zero-initialised."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_init=zeros)
        out_dim = config.patch_size**2 * config.output_channels
        self.adaln = Dense(config.width, 2 * config.width, ("embed", "adaln"), **kw)
        self.linear = Dense(config.width, out_dim, ("embed", "patch"), **kw)

    def __call__(self, x_BLD, c_BKD):
        shift_BKD, scale_BKD = jnp.split(self.adaln(jax.nn.silu(c_BKD)), 2, axis=-1)
        return self.linear(modulate(layer_norm(x_BLD), shift_BKD, scale_BKD))
