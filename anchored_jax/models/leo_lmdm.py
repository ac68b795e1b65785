"""LEO phase 2: the Latent Motion Diffusion Model (LMDM), a denoiser over motion codes.

The animator turns a frame into 20 motion magnitudes alpha. The LMDM generates sequences of
them: it denoises the offsets `m_BLM = alpha_BLM - alpha_1` of an L-step sequence from its
first code alpha_1. The Linear Motion Condition (LMC) concatenates alpha_1 to every time step's
input; in unconditional mode (dropped per example for classifier-free guidance) a learned null
code stands in for it. The codes are then `alpha = m + alpha_1` (`codes_from_offsets`).

Window gap (`frame_times=True`, the default): a window is its conditioning code (slot 0)
followed by L-1 consecutive codes that start `gap_B` frames after it. LEO's first-frame
sequences and its chaining have gap 1; the model is trained on every gap, so the anchored
LMDM can ask for steps 300..314 after alpha_1 and get codes whose spread from alpha_1 is that
of 300 frames, not of 1 (sampling/leo_anchored_motion.py). The gap enters as one embedding of
log(gap) added to every token, beside the fixed positions 0..L-1. Why not each step's own
time: a sinusoid fine enough to tell frame 300 from 301 gives every rarely-seen time its own
high-frequency code, and the tiny model answered with per-frame jitter at long gaps (|delta
alpha| 1.8x the real steps); the positions, seen in every window, carry the step-to-step
structure instead. With `frame_times=False` there is no gap input (every window reads as
starting right after its conditioning code: the earlier design).

`model.architecture` picks the backbone between the shared input projection, timestep MLP and
zero-initialised output layer:
- "transformer": pre-norm temporal self-attention blocks over the L steps plus an MLP; the
  timestep embedding is added to every step's token.
- "unet": the 1-D temporal U-Net of LEO's paper (Wang et al.): kernel-3 conv residual blocks
  (GroupNorm, SiLU, timestep embedding added), halving/doubling L between levels with skip
  connections, and one temporal self-attention block at the lowest resolution.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.models.embeddings import (
    FRAME_TIME_FREQ_DIM,
    frame_time_features,
    sincos_1d,
    timestep_features,
)

TIMESTEP_FEATURES = 256  # width of the timestep sinusoid fed to the embedding MLP
ARCHITECTURES = ("transformer", "unet")
UNET_GROUPS = 8  # GroupNorm groups in the U-Net; every unet_channels entry is a multiple


@dataclasses.dataclass(frozen=True)
class LmdmConfig:
    """Shapes of the motion denoiser; validated on construction (one line per bad field)."""

    motion_dim: int = 20  # magnitudes per code (the animator's motion_dim)
    length: int = 16  # L: codes per generated sequence, alpha_1 included
    width: int = 128  # token width
    depth: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads; must divide width
    mlp_ratio: float = 4.0  # MLP hidden width / width
    architecture: str = "transformer"  # transformer | unet
    # unet: channels per level (full L, L/2, ...); width is then the timestep-embedding width,
    # depth and mlp_ratio are unused, and num_heads must divide the last entry.
    unet_channels: tuple[int, ...] = (64, 128)
    # Windows carry their gap after the conditioning code (a sinusoid of log(gap) + MLP);
    # False: no gap input, every window reads as starting right after its conditioning code.
    frame_times: bool = True
    # Longest period of the log-gap sinusoid, in units of log(frames); log-gaps up to half of
    # it embed uniquely (20: any gap below e^10 frames).
    time_period: float = 20.0

    def __post_init__(self):
        # A config restored from JSON holds a list; the config is hashed as part of a graphdef,
        # whichever the architecture.
        if isinstance(self.unet_channels, list):
            object.__setattr__(self, "unet_channels", tuple(self.unet_channels))
        for name in ("motion_dim", "length", "width", "depth", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}: expected a positive int, got {value!r}")
        if self.length < 2:
            raise ValueError(f"model.length: expected >= 2 (alpha_1 plus one), got {self.length}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"model.architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.architecture == "unet":
            self._validate_unet()
        elif self.width % self.num_heads:
            raise ValueError(
                f"model.num_heads: expected a divisor of model.width ({self.width}), "
                f"got {self.num_heads}"
            )
        if not self.mlp_ratio > 0:
            raise ValueError(f"model.mlp_ratio: expected > 0, got {self.mlp_ratio}")
        if not isinstance(self.frame_times, bool):
            raise ValueError(f"model.frame_times: expected True or False, got {self.frame_times!r}")
        if not self.time_period > 0:
            raise ValueError(f"model.time_period: expected > 0 frames, got {self.time_period}")

    def _validate_unet(self):
        channels = self.unet_channels
        if (
            not isinstance(channels, tuple)
            or not channels
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels)
            or any(c % UNET_GROUPS for c in channels)
        ):
            raise ValueError(
                f"model.unet_channels: expected a non-empty tuple of positive multiples of "
                f"{UNET_GROUPS}, got {channels!r}"
            )
        if self.length % self.unet_factor:
            raise ValueError(
                f"model.length: expected a multiple of {self.unet_factor} (2**(levels-1) for "
                f"model.unet_channels {channels}), got {self.length}"
            )
        if channels[-1] % self.num_heads:
            raise ValueError(
                f"model.num_heads: expected a divisor of model.unet_channels[-1] "
                f"({channels[-1]}), got {self.num_heads}"
            )

    @property
    def unet_factor(self) -> int:
        """The U-Net's total downsampling of L: 2**(levels-1)."""
        return 2 ** (len(self.unet_channels) - 1)


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


class UnetResBlock(nnx.Module):
    """Two kernel-3 convs over time (GroupNorm, SiLU), the timestep embedding added between."""

    def __init__(self, c_in: int, c_out: int, t_width: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(c_in, num_groups=UNET_GROUPS, rngs=rngs)
        self.conv1 = nnx.Conv(c_in, c_out, (3,), rngs=rngs)
        self.t_proj = nnx.Linear(t_width, c_out, rngs=rngs)
        self.norm2 = nnx.GroupNorm(c_out, num_groups=UNET_GROUPS, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3,), rngs=rngs)
        self.skip = nnx.Linear(c_in, c_out, rngs=rngs) if c_in != c_out else None

    def __call__(self, x_BLC: jax.Array, t_emb_BLT: jax.Array) -> jax.Array:
        h_BLC = self.conv1(jax.nn.silu(self.norm1(x_BLC)))
        h_BLC = h_BLC + self.t_proj(jax.nn.silu(t_emb_BLT))
        h_BLC = self.conv2(jax.nn.silu(self.norm2(h_BLC)))
        return (x_BLC if self.skip is None else self.skip(x_BLC)) + h_BLC


class TemporalUnet(nnx.Module):
    """`(h_BLC, t_emb_BLT) -> h_BLC`: the U-Net body, channels unet_channels[0] in and out."""

    def __init__(self, config: LmdmConfig, *, rngs: nnx.Rngs):
        ch, tw = config.unet_channels, config.width
        self.down = nnx.List(
            [UnetResBlock(c_in, c, tw, rngs=rngs) for c_in, c in zip((ch[0],) + ch[:-1], ch)]
        )
        self.downsample = nnx.List([nnx.Conv(c, c, (3,), strides=(2,), rngs=rngs) for c in ch[:-1]])
        self.attn_norm = nnx.GroupNorm(ch[-1], num_groups=UNET_GROUPS, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=config.num_heads, in_features=ch[-1], decode=False, rngs=rngs
        )
        self.mid = UnetResBlock(ch[-1], ch[-1], tw, rngs=rngs)
        # Level i upsamples level i+1 (nearest x2 + conv), concatenates its skip, then mixes.
        self.upsample = nnx.List([nnx.Conv(c, c, (3,), rngs=rngs) for c in ch[1:]])
        self.up = nnx.List(
            [UnetResBlock(ch[i + 1] + ch[i], ch[i], tw, rngs=rngs) for i in range(len(ch) - 1)]
        )

    def __call__(self, h_BLC: jax.Array, t_emb_BLT: jax.Array) -> jax.Array:
        skips, t_embs = [], []
        for level, block in enumerate(self.down):
            h_BLC = block(h_BLC, t_emb_BLT)
            if level < len(self.downsample):
                skips.append(h_BLC)
                t_embs.append(t_emb_BLT)
                h_BLC = self.downsample[level](h_BLC)
                # Per-step timesteps: each coarse step gets the mean embedding of its two steps.
                b, length, tw = t_emb_BLT.shape
                t_emb_BLT = t_emb_BLT.reshape(b, length // 2, 2, tw).mean(2)
        # Positions for the only order-blind layer (as the transformer's), then attention.
        positions_LC = sincos_1d(h_BLC.shape[-1], np.arange(h_BLC.shape[1]))
        h_BLC = h_BLC + jnp.asarray(positions_LC, jnp.float32)
        h_BLC = h_BLC + self.attn(self.attn_norm(h_BLC))
        h_BLC = self.mid(h_BLC, t_emb_BLT)
        for level in reversed(range(len(self.up))):
            h_BLC = self.upsample[level](jnp.repeat(h_BLC, 2, axis=1))
            h_BLC = jnp.concatenate([h_BLC, skips[level]], -1)
            h_BLC = self.up[level](h_BLC, t_embs[level])
        return h_BLC


class LatentMotionDenoiser(nnx.Module):
    """`(m_t_BLM, t_BL, alpha1_BM) -> model output_BLM` (epsilon, v or x0 of the offsets m).

    `gap_B` (frame_times models): frames from the conditioning code to the window's step 1;
    None means 1 (consecutive steps right after it).
    """

    def __init__(self, config: LmdmConfig, *, rngs: nnx.Rngs):
        self.config = config
        m, w = config.motion_dim, config.width
        unet = config.architecture == "unet"
        c = config.unet_channels[0] if unet else w  # width of the per-step features
        # LMC: every step's input is [m_t | alpha_1], 2M wide.
        self.embed_in = nnx.Linear(2 * m, c, rngs=rngs)
        self.null_code = nnx.Param(jnp.zeros((m,), jnp.float32))
        self.t_fc1 = nnx.Linear(TIMESTEP_FEATURES, w, rngs=rngs)
        self.t_fc2 = nnx.Linear(w, w, rngs=rngs)
        if config.frame_times:
            self.time_fc1 = nnx.Linear(FRAME_TIME_FREQ_DIM, w, rngs=rngs)
            self.time_fc2 = nnx.Linear(w, c, rngs=rngs)
        if unet:
            self.unet = TemporalUnet(config, rngs=rngs)
            self.norm_out = nnx.GroupNorm(c, num_groups=UNET_GROUPS, rngs=rngs)
        else:
            self.blocks = nnx.List([TemporalBlock(config, rngs=rngs) for _ in range(config.depth)])
            self.norm_out = nnx.LayerNorm(w, rngs=rngs)
        # Zero output layer: the untrained model predicts 0 (DiT's adaLN-zero spirit).
        self.out = nnx.Linear(c, m, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(
        self,
        m_t_BLM: jax.Array,
        t_BL: jax.Array,
        alpha1_BM: jax.Array,
        *,
        gap_B: jax.Array | None = None,
        drop_condition_B: jax.Array | None = None,
    ) -> jax.Array:
        b, length, m = m_t_BLM.shape
        unet = self.config.architecture == "unet"
        factor = self.config.unet_factor if unet else 1
        if m != self.config.motion_dim or length > self.config.length or length % factor:
            raise ValueError(
                f"lmdm.m_t_BLM: expected (B, <= {self.config.length} and a multiple of {factor},"
                f" {self.config.motion_dim}), got {m_t_BLM.shape}"
            )
        cond_BM = alpha1_BM.astype(jnp.float32)
        if drop_condition_B is not None:
            null_BM = jnp.broadcast_to(self.null_code[...], cond_BM.shape)
            cond_BM = jnp.where(drop_condition_B[:, None], null_BM, cond_BM)
        cond_BLM = jnp.broadcast_to(cond_BM[:, None, :], (b, length, m))
        h_BLW = self.embed_in(jnp.concatenate([m_t_BLM.astype(jnp.float32), cond_BLM], -1))
        t_emb_BLW = self.t_fc2(jax.nn.silu(self.t_fc1(timestep_features(t_BL))))
        if self.config.frame_times:
            gap_B = jnp.ones((b,), jnp.float32) if gap_B is None else gap_B
            log_gap_B = jnp.log(jnp.maximum(jnp.asarray(gap_B, jnp.float32), 1.0))
            features = frame_time_features(log_gap_B, self.config.time_period)
            h_BLW = h_BLW + self.time_fc2(jax.nn.silu(self.time_fc1(features)))[:, None]
        if unet:
            h_BLC = self.unet(h_BLW, t_emb_BLW)
            return self.out(jax.nn.silu(self.norm_out(h_BLC)))
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
