"""Single reverse-diffusion steps (DDIM, DDPM) and the timestep spacing a sampler walks.

These are the per-step maths only; `diffusion.reverse_step.Solver` picks one per setting and
`reverse_scan` runs it in a jitted loop, for every sampler. Timesteps are prefix-shaped per
frame (`t_BK` for `x_BKHWC`), so frames at different noise levels (a clean anchor among noisy
frames) step together. A `t_prev` below 0 means "the step that lands on x0".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from anchored_jax.diffusion.objectives import eps_from_x0, predict_x0_and_eps
from anchored_jax.diffusion.schedules import Schedule, alpha_bar_at, coefficient_at


def timestep_spacing(num_timesteps: int, num_steps: int) -> jax.Array:
    """Descending int32 timesteps, `num_steps` of them, from num_timesteps-1 down to 0.

    Evenly spaced over the whole chain with both ends included (the "trailing"/"linspace"
    choice rather than DDIM's original `range(0, T, T // S)`, which never visits T-1 and so
    starts from a sample that is not quite pure noise). Rounded to the nearest integer; for
    num_steps <= num_timesteps the entries are distinct, and num_steps == num_timesteps is
    the full chain T-1, ..., 0. num_steps == 1 gives [T-1].
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(
            f"sampling.num_steps: expected an int in [1, {num_timesteps}], got {num_steps}"
        )
    if num_steps == 1:
        return jnp.asarray([num_timesteps - 1], dtype=jnp.int32)
    # floor(x + 0.5) is strictly increasing on points at least 1 apart, so no duplicates.
    ascending = np.floor(np.linspace(0.0, num_timesteps - 1, num_steps) + 0.5).astype(np.int32)
    return jnp.asarray(ascending[::-1].copy(), dtype=jnp.int32)


def _one_minus_alpha_bar_at(
    schedule: Schedule, t: jax.Array, x_shape: tuple[int, ...]
) -> jax.Array:
    # Squaring the float64-derived sqrt(1 - alpha_bar) keeps relative precision near t = 0,
    # where 1 - alpha_bar in float32 would cancel catastrophically.
    s = coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_shape, before_start=0.0)
    return jnp.square(s)


def _x0_and_eps(kind, schedule, x_t, t, model_out, clip_x0):
    x0, eps = predict_x0_and_eps(kind, schedule, x_t, t, model_out)
    if clip_x0:
        # As in guided-diffusion: clip x0, then re-derive eps so the step stays consistent.
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = eps_from_x0(schedule, x_t, t, x0)
    return x0, eps


def ddim_step(
    kind: str,
    schedule: Schedule,
    x_t: jax.Array,
    t: jax.Array,
    t_prev: jax.Array,
    model_out: jax.Array,
    eta: float = 0.0,
    noise: jax.Array | None = None,
    clip_x0: bool = False,
) -> jax.Array:
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12); eta=0 is deterministic.

    `t` and `t_prev` are prefix-shaped like x_t (or scalars). Where t_prev < 0 the step returns
    the x0 estimate. `noise` (shaped like x_t) is needed only when eta > 0.
    """
    x0, eps = _x0_and_eps(kind, schedule, x_t, t, model_out, clip_x0)
    ab = alpha_bar_at(schedule, t, x_t.shape)
    ab_prev = alpha_bar_at(schedule, t_prev, x_t.shape)
    one_m_ab = _one_minus_alpha_bar_at(schedule, t, x_t.shape)
    one_m_ab_prev = _one_minus_alpha_bar_at(schedule, t_prev, x_t.shape)
    x_prev = jnp.sqrt(ab_prev) * x0
    if isinstance(eta, (int, float)) and eta == 0.0:
        x_prev = x_prev + jnp.sqrt(one_m_ab_prev) * eps
    else:
        if noise is None:
            raise ValueError("sampling.eta: eta > 0 needs a `noise` array shaped like x_t")
        sigma = eta * jnp.sqrt(one_m_ab_prev / one_m_ab * jnp.maximum(1.0 - ab / ab_prev, 0.0))
        direction = jnp.sqrt(jnp.maximum(one_m_ab_prev - jnp.square(sigma), 0.0))
        x_prev = x_prev + direction * eps + sigma * noise
    return x_prev.astype(x_t.dtype)


def ddpm_posterior(
    schedule: Schedule,
    x0: jax.Array,
    x_t: jax.Array,
    t: jax.Array,
    t_prev: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of q(x_{t_prev} | x_t, x0); t_prev defaults to t - 1 (Ho et al. 2020).

    mean = coef1 x0 + coef2 x_t with coef1 = sqrt(ab_prev) beta / (1 - ab),
    coef2 = sqrt(alpha) (1 - ab_prev) / (1 - ab), variance beta~ = beta (1 - ab_prev) / (1 - ab),
    where alpha = 1 - beta = ab / ab_prev, so a respaced chain uses its effective beta.
    At t_prev < 0 the mean is x0 and the variance 0.
    """
    t = jnp.asarray(t, jnp.int32)
    t_prev = t - 1 if t_prev is None else jnp.asarray(t_prev, jnp.int32)
    ab = alpha_bar_at(schedule, t, x_t.shape)
    ab_prev = alpha_bar_at(schedule, t_prev, x_t.shape)
    one_m_ab = _one_minus_alpha_bar_at(schedule, t, x_t.shape)
    one_m_ab_prev = _one_minus_alpha_bar_at(schedule, t_prev, x_t.shape)
    # On the full chain read beta_t from the table: 1 - ab/ab_prev loses digits in float32.
    rank = len(x_t.shape)
    t_x = t.reshape(t.shape + (1,) * (rank - t.ndim))
    t_prev_x = t_prev.reshape(t_prev.shape + (1,) * (rank - t_prev.ndim))
    beta = jnp.where(
        t_prev_x == t_x - 1,
        coefficient_at(schedule.betas, t, x_t.shape),
        1.0 - ab / ab_prev,
    )
    coef1 = jnp.sqrt(ab_prev) * beta / one_m_ab
    coef2 = jnp.sqrt(1.0 - beta) * one_m_ab_prev / one_m_ab
    variance = beta * one_m_ab_prev / one_m_ab
    return coef1 * x0 + coef2 * x_t, variance


def ddpm_step(
    kind: str,
    schedule: Schedule,
    x_t: jax.Array,
    t: jax.Array,
    model_out: jax.Array,
    noise: jax.Array,
    t_prev: jax.Array | None = None,
    clip_x0: bool = False,
) -> jax.Array:
    """One ancestral DDPM step: posterior mean plus sqrt(beta~) noise (none where t_prev < 0).

    `t_prev` defaults to t - 1 (the full 1000-step chain); a respaced chain passes its own
    previous timestep, which samples the same posterior with the chain's effective beta.
    """
    x0, _ = _x0_and_eps(kind, schedule, x_t, t, model_out, clip_x0)
    mean, variance = ddpm_posterior(schedule, x0, x_t, t, t_prev)
    return (mean + jnp.sqrt(variance) * noise).astype(x_t.dtype)
