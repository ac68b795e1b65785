"""Discrete noise schedules and the forward process q(x_t | x_0).

Every function here takes a timestep array `t` whose shape is a *prefix* of the data's
shape: `t_B` with `x_BHWC`, or `t_BK` with `x_BKHWC` when each frame has its own diffusion
time (a clean anchor frame sits at t=0 among noisy frames). `coefficient_at` is the single
place where a per-timestep table is gathered and broadcast over the trailing axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

SCHEDULE_KINDS = ("linear", "cosine")


@struct.dataclass
class Schedule:
    """Per-timestep tables of a discrete diffusion, each float32 of shape (num_timesteps,)."""

    betas: jax.Array
    alphas_cumprod: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    # Static, so that timestep spacings and loop lengths derived from it stay Python ints.
    num_timesteps: int = struct.field(pytree_node=False)


def _linear_betas(num_timesteps: int) -> np.ndarray:
    # DDPM (Ho et al. 2020) and DiT use linspace(1e-4, 0.02) over 1000 steps.
    return np.linspace(1e-4, 0.02, num_timesteps, dtype=np.float64)


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    # Nichol & Dhariwal 2021, eq. 17: alpha_bar(u) = f(u) / f(0) with
    # f(u) = cos^2((u + s) / (1 + s) * pi / 2); betas clipped at 0.999 for the singularity at u = 1.
    def f(u: np.ndarray) -> np.ndarray:
        return np.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2

    steps = np.arange(num_timesteps, dtype=np.float64)
    betas = 1.0 - f((steps + 1) / num_timesteps) / f(steps / num_timesteps)
    return np.minimum(betas, max_beta)


def make_schedule(kind: str, num_timesteps: int = 1000) -> Schedule:
    """Builds a `Schedule` of `kind` in {'linear', 'cosine'} (tables computed in float64)."""
    if num_timesteps < 1:
        raise ValueError(f"diffusion.num_timesteps: expected a positive int, got {num_timesteps}")
    if kind == "linear":
        betas = _linear_betas(num_timesteps)
    elif kind == "cosine":
        betas = _cosine_betas(num_timesteps)
    else:
        raise ValueError(
            f"diffusion.schedule: expected one of {list(SCHEDULE_KINDS)}, got {kind!r}"
        )
    alphas_cumprod = np.cumprod(1.0 - betas)
    as_f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    return Schedule(
        betas=as_f32(betas),
        alphas_cumprod=as_f32(alphas_cumprod),
        sqrt_alphas_cumprod=as_f32(np.sqrt(alphas_cumprod)),
        sqrt_one_minus_alphas_cumprod=as_f32(np.sqrt(1.0 - alphas_cumprod)),
        num_timesteps=int(num_timesteps),
    )


def coefficient_at(
    table_T: jax.Array,
    t: jax.Array,
    x_shape: tuple[int, ...],
    *,
    before_start: float | None = None,
) -> jax.Array:
    """Gathers `table_T[t]` and appends singleton axes so it broadcasts against `x_shape`.

    `t.shape` must be a prefix of `x_shape` (`t_BK` for `x_BKHWC`, `t_B` for `x_BHWC`, or a
    scalar). With `before_start`, entries with t < 0 read that value instead: DDIM's step
    "before t=0" is the clean x_0, where alpha_bar = 1.
    """
    t = jnp.asarray(t, dtype=jnp.int32)
    if tuple(x_shape[: t.ndim]) != t.shape:
        raise ValueError(
            f"diffusion.t: expected a shape that prefixes the data shape {tuple(x_shape)}, "
            f"got {t.shape}"
        )
    coef = jnp.take(table_T, jnp.clip(t, 0, table_T.shape[0] - 1))
    if before_start is not None:
        coef = jnp.where(t < 0, jnp.asarray(before_start, table_T.dtype), coef)
    return coef.reshape(t.shape + (1,) * (len(x_shape) - t.ndim))


def alpha_bar_at(schedule: Schedule, t: jax.Array, x_shape: tuple[int, ...]) -> jax.Array:
    """alpha_bar_t broadcast against `x_shape`, with alpha_bar = 1 for t < 0 (clean data)."""
    return coefficient_at(schedule.alphas_cumprod, t, x_shape, before_start=1.0)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """Draws x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, per leading-axis t."""
    if noise.shape != x0.shape:
        raise ValueError(f"diffusion.q_sample: noise shape {noise.shape} != x0 shape {x0.shape}")
    sqrt_ab = coefficient_at(schedule.sqrt_alphas_cumprod, t, x0.shape)
    sqrt_1m_ab = coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t, x0.shape)
    return (sqrt_ab * x0 + sqrt_1m_ab * noise).astype(x0.dtype)
