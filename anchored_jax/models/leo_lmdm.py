"""LEO phase 2: the Latent Motion Diffusion Model (LMDM), a transformer over motion codes.

The animator turns a frame into 20 motion magnitudes alpha. The LMDM generates sequences of
them: it denoises the offsets `m_BLM = alpha_BLM - alpha_1` of an L-step sequence from its
first code alpha_1. The Linear Motion Condition (LMC) concatenates alpha_1 to every time step's
input; in unconditional mode (dropped per example for classifier-free guidance) a learned null
code stands in for it. The codes are then `alpha = m + alpha_1` (`codes_from_offsets`).

Each block is pre-norm temporal self-attention over the L steps plus an MLP; the diffusion
timestep is a sinusoid through a small MLP, added to every step's token.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.models.embeddings import sincos_1d, timestep_features

TIMESTEP_FEATURES = 256  # width of the timestep sinusoid fed to the embedding MLP


@dataclasses.dataclass(frozen=True)
class LmdmConfig:
    """Shapes of the motion denoiser; validated on construction (one line per bad field)."""

    motion_dim: int = 20  # magnitudes per code (the animator's motion_dim)
    length: int = 16  # L: codes per generated sequence, alpha_1 included
    width: int = 128  # token width
    depth: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads; must divide width
    mlp_ratio: float = 4.0  # MLP hidden width / width

    def __post_init__(self):
        for name in ("motion_dim", "length", "width", "depth", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}: expected a positive int, got {value!r}")
        if self.length < 2:
            raise ValueError(f"model.length: expected >= 2 (alpha_1 plus one), got {self.length}")
        if self.width % self.num_heads:
            raise ValueError(
                f"model.num_heads: expected a divisor of model.width ({self.width}), "
                f"got {self.num_heads}"
            )
        if not self.mlp_ratio > 0:
            raise ValueError(f"model.mlp_ratio: expected > 0, got {self.mlp_ratio}")


class TemporalBlock(nnx.Module):
    """Pre-norm self-attention over the L time steps, then a GELU MLP, both residual."""

    def __init__(self, config: LmdmConfig, *, rngs: nnx.Rngs):
        w = config.width
        self.norm1 = nnx.LayerNorm(w, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=config.num_heads, in_features=w, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(w, rngs=rngs)
        hidden = int(w * config.mlp_ratio)
        self.fc1 = nnx.Linear(w, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, w, rngs=rngs)

    def __call__(self, h_BLW: jax.Array) -> jax.Array:
        h_BLW = h_BLW + self.attn(self.norm1(h_BLW))
        return h_BLW + self.fc2(jax.nn.gelu(self.fc1(self.norm2(h_BLW))))


class LatentMotionDenoiser(nnx.Module):
    """`(m_t_BLM, t_BL, alpha1_BM) -> model output_BLM` (epsilon, v or x0 of the offsets m)."""

    def __init__(self, config: LmdmConfig, *, rngs: nnx.Rngs):
        self.config = config
        m, w = config.motion_dim, config.width
        # LMC: every step's input is [m_t | alpha_1], 2M wide.
        self.embed_in = nnx.Linear(2 * m, w, rngs=rngs)
        self.null_code = nnx.Param(jnp.zeros((m,), jnp.float32))
        self.t_fc1 = nnx.Linear(TIMESTEP_FEATURES, w, rngs=rngs)
        self.t_fc2 = nnx.Linear(w, w, rngs=rngs)
        self.blocks = nnx.List([TemporalBlock(config, rngs=rngs) for _ in range(config.depth)])
        self.norm_out = nnx.LayerNorm(w, rngs=rngs)
        # Zero output layer: the untrained model predicts 0 (DiT's adaLN-zero spirit).
        self.out = nnx.Linear(w, m, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(
        self,
        m_t_BLM: jax.Array,
        t_BL: jax.Array,
        alpha1_BM: jax.Array,
        *,
        drop_condition_B: jax.Array | None = None,
    ) -> jax.Array:
        b, length, m = m_t_BLM.shape
        if m != self.config.motion_dim or length > self.config.length:
            raise ValueError(
                f"lmdm.m_t_BLM: expected (B, <= {self.config.length}, {self.config.motion_dim}),"
                f" got {m_t_BLM.shape}"
            )
        cond_BM = alpha1_BM.astype(jnp.float32)
        if drop_condition_B is not None:
            null_BM = jnp.broadcast_to(self.null_code[...], cond_BM.shape)
            cond_BM = jnp.where(drop_condition_B[:, None], null_BM, cond_BM)
        cond_BLM = jnp.broadcast_to(cond_BM[:, None, :], (b, length, m))
        h_BLW = self.embed_in(jnp.concatenate([m_t_BLM.astype(jnp.float32), cond_BLM], -1))
        t_emb_BLW = self.t_fc2(jax.nn.silu(self.t_fc1(timestep_features(t_BL))))
        # Fixed sinusoidal step positions (a trace-time constant), as DiT's patch positions.
        positions_LW = jnp.asarray(sincos_1d(self.config.width, np.arange(length)), jnp.float32)
        h_BLW = h_BLW + t_emb_BLW + positions_LW
        for block in self.blocks:
            h_BLW = block(h_BLW)
        return self.out(self.norm_out(h_BLW))


def codes_from_offsets(m_BLM: jax.Array, alpha1_BM: jax.Array) -> jax.Array:
    """The motion codes `alpha = m + alpha_1` of generated offsets (the LMC's inverse)."""
    return m_BLM + alpha1_BM[:, None, :]


def offsets_from_codes(alpha_BLM: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(m_BLM, alpha1_BM)`: a code sequence as offsets from its first code, and that code."""
    alpha1_BM = alpha_BLM[:, 0]
    return alpha_BLM - alpha1_BM[:, None, :], alpha1_BM
