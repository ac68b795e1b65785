"""Token and conditioning embeddings of the sDiT.

- frames -> patch tokens, plus DiT's fixed 2-D sin-cos position of each patch (shared
  by every frame, so nothing ties the model to a frame count or frame rate);
- diffusion step t per frame -> DiT's timestep embedder;
- real frame time tau (seconds from the anchor) -> continuous sinusoid -> MLP;
- landmarks per frame -> normalised vector -> MLP.
"""

import math

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.models.dense import Dense

# DiT's TimestepEmbedder: frequency_embedding_size=256, max_period=10000, MLP std 0.02.
TIMESTEP_FREQ_DIM = 256
TIMESTEP_MAX_PERIOD = 10000.0
COND_MLP_INIT = nnx.initializers.normal(stddev=0.02)

FRAME_TIME_FREQ_DIM = 256
# Shortest period of the frame-time sinusoid as a fraction of the longest: with the
# default 10 s that is 10 ms, finer than the frame spacing at 60 fps.
FRAME_TIME_PERIOD_RANGE = 1000.0


def sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """[sin | cos] of positions at DiT's geometric frequencies 1/10000^(i/(D/2))."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    angles = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d_positions(embed_dim: int, grid_size: int) -> np.ndarray:
    """Fixed position of each patch, `pos_ND`, row-major over the (h, w) grid.

    As DiT's get_2d_sincos_pos_embed: the first D/2 channels encode the column (w), the
    last D/2 the row (h) (DiT models.py meshgrid(grid_w, grid_h) then grid[0] first).
    """
    h, w = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    return np.concatenate(
        [sincos_1d(embed_dim // 2, w), sincos_1d(embed_dim // 2, h)], axis=1
    ).astype(np.float32)


def timestep_features(t: jax.Array, dim: int = TIMESTEP_FREQ_DIM) -> jax.Array:
    """DiT's timestep sinusoid [cos | sin] of t in [0, 1000), shape `t.shape + (dim,)`."""
    half = dim // 2
    freqs = jnp.exp(-math.log(TIMESTEP_MAX_PERIOD) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def frame_time_features(
    times: jax.Array, max_period: float, dim: int = FRAME_TIME_FREQ_DIM
) -> jax.Array:
    """Sinusoid of a real time in seconds, continuous and independent of any fps.

    Periods are geometric from `max_period` down to max_period / 1000. The slowest pair
    turns once per `max_period`, so every tau in (-max_period/2, max_period/2) has a
    distinct code and sign is kept (sin is odd); larger |tau| still embed smoothly but
    the slowest pair wraps, which is why the period should cover the training window.
    """
    half = dim // 2
    periods = max_period * FRAME_TIME_PERIOD_RANGE ** (
        -jnp.arange(half, dtype=jnp.float32) / (half - 1)
    )
    args = jnp.asarray(times, jnp.float32)[..., None] * (2 * jnp.pi / periods)
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def normalise_landmarks(landmarks_BKLC: jax.Array) -> jax.Array:
    """Per-frame landmark vector: shape (centred, unit RMS radius) + where and how big.

    Centring and scaling per frame makes the expression features independent of where
    the face sits and how large it is; the centre (C values) and log scale (1 value) are
    appended so head translation and zoom still reach the model. Returns `[B, K, L*C+C+1]`.
    """
    lm = landmarks_BKLC.astype(jnp.float32)
    centre_BK1C = lm.mean(axis=2, keepdims=True)
    offsets = lm - centre_BK1C
    scale_BK11 = jnp.sqrt(
        jnp.mean(jnp.sum(offsets**2, axis=-1, keepdims=True), axis=2, keepdims=True)
    )
    scale_BK11 = jnp.maximum(scale_BK11, 1e-6)  # a degenerate (all-equal) frame stays finite
    shape_BKF = einops.rearrange(offsets / scale_BK11, "b k l c -> b k (l c)")
    return jnp.concatenate(
        [shape_BKF, centre_BK1C[:, :, 0], jnp.log(scale_BK11[:, :, 0, :])], axis=-1
    )


class ConditionMLP(nnx.Module):
    """features -> Linear -> SiLU -> Linear -> D, as DiT's timestep MLP (normal(0.02) init)."""

    def __init__(self, in_features: int, width: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_init=COND_MLP_INIT)
        self.fc1 = Dense(in_features, width, ("cond_in", "mlp"), **kw)
        self.fc2 = Dense(width, width, ("mlp", "embed"), **kw)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(features)))


class PatchEmbed(nnx.Module):
    """Frames -> tokens: each p x p patch flattened and projected (DiT's conv, as a matmul)."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs, channels: int = 0):
        """channels: of the images to embed; 0 = the frames' (`config.in_channels`)."""
        self.patch_size = config.patch_size
        patch_dim = config.patch_size**2 * (channels or config.in_channels)
        self.proj = Dense(
            patch_dim,
            config.width,
            ("patch", "embed"),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x_BKHWC: jax.Array) -> jax.Array:
        p = self.patch_size
        patches_BKNP = einops.rearrange(
            x_BKHWC, "b k (h p1) (w p2) c -> b k (h w) (p1 p2 c)", p1=p, p2=p
        )
        return self.proj(patches_BKNP)


class TimestepEmbedder(nnx.Module):
    """Diffusion step of each frame -> D (DiT's TimestepEmbedder, applied per frame)."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.mlp = ConditionMLP(
            TIMESTEP_FREQ_DIM, config.width, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, t_BK: jax.Array) -> jax.Array:
        return self.mlp(timestep_features(t_BK))


class FrameTimeEmbedder(nnx.Module):
    """Frame time in seconds relative to the anchor -> D; no frame-index table."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.max_period = config.time_embed_period
        self.mlp = ConditionMLP(
            FRAME_TIME_FREQ_DIM, config.width, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, times_BK: jax.Array) -> jax.Array:
        return self.mlp(frame_time_features(times_BK, self.max_period))


def rasterise_landmarks(landmarks_BKLC: jax.Array, size: int, sigma_px: float = 1.0) -> jax.Array:
    """Landmarks drawn on a `size x size` map: a Gaussian of `sigma_px` pixels at each point's
    (x, y) in [0, 1] image coordinates, summed over points. Returns `[B, K, size, size, 1]`.

    Separable: the map is `sum_l g_y(l) g_x(l)^T`, one small einsum, differentiable in the
    coordinates.
    """
    centres = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
    xy_BKL2 = landmarks_BKLC[..., :2].astype(jnp.float32)

    def profile(coord_BKL):
        d = (centres - coord_BKL[..., None]) * (size / sigma_px)
        return jnp.exp(-0.5 * d * d)

    gx_BKLW, gy_BKLH = profile(xy_BKL2[..., 0]), profile(xy_BKL2[..., 1])
    return jnp.einsum("bklh,bklw->bkhw", gy_BKLH, gx_BKLW)[..., None]


class LandmarkMapEmbedder(nnx.Module):
    """Driving landmarks as per-patch tokens: the frame's landmark map (`rasterise_landmarks`
    at the model's resolution), patchified and projected like the frames themselves."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.size = config.image_size
        self.patch_embed = PatchEmbed(
            config, dtype=dtype, param_dtype=param_dtype, rngs=rngs, channels=1
        )

    def __call__(self, landmarks_BKLC: jax.Array) -> jax.Array:
        return self.patch_embed(rasterise_landmarks(landmarks_BKLC, self.size))


class LandmarkEmbedder(nnx.Module):
    """Driving landmarks of each frame -> D (see `normalise_landmarks`)."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        in_features = config.num_landmarks * config.landmark_dim + config.landmark_dim + 1
        self.mlp = ConditionMLP(
            in_features, config.width, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, landmarks_BKLC: jax.Array) -> jax.Array:
        return self.mlp(normalise_landmarks(landmarks_BKLC))
