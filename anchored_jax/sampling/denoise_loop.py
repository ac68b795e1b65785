"""The plain jitted reverse-diffusion loop that turns noise into clips, with per-frame timesteps.

`sample` runs the shared stepper (`diffusion.reverse_step`) over a descending timestep spacing,
calling the denoiser once per step. Data is laid out with batch (or segment) and frame as its
first two axes, `x_BKHWC`; the loop hands the denoiser per-frame timesteps `t_BK`. Frames named
in `known_mask` (a known anchor such as the reenactment source image) are fed clean at
per-frame t=0 on every step and returned exactly, so the model sees them as the clean context
it was trained with. The anchored sampler (`anchored_sampler`) steps with the same solver.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.reverse_step import Solver, hold_known_times, reverse_scan
from anchored_jax.diffusion.schedules import Schedule

# denoise_fn(x_t_BK..., t_BK) -> model output shaped like x_t (epsilon, v or x0 per `prediction`).
DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    noise_x: jax.Array,
    *,
    num_steps: int,
    prediction: str,
    sampler: str = "ddim",
    key: jax.Array | None = None,
    eta: float = 0.0,
    clip_x0: bool = True,
    known_x0: jax.Array | None = None,
    known_mask: jax.Array | None = None,
) -> jax.Array:
    """Denoises `noise_x` (shape B, K, ...; axis 0 batch/segment, axis 1 frame) to x0.

    Args:
      denoise_fn: `(x_t, t_BK) -> model_out`, with `t_BK` int32 of shape `noise_x.shape[:2]`.
      schedule: the training schedule; `num_steps` timesteps are taken from it by
        `timestep_spacing` (T-1 down to 0, evenly spaced), and the last step lands on x0.
      num_steps, prediction, sampler, eta, clip_x0: static Python values (a `Solver`).
        `sampler="ddim"` is deterministic for eta=0. `sampler="ddpm"` is ancestral sampling
        on the same spacing: `num_steps == schedule.num_timesteps` is the original full
        chain, fewer steps a respaced chain with each step's effective beta.
      key: randomness for DDPM / DDIM with eta > 0; step i uses `split(key, num_steps)[i]`,
        so a key fixes the output.
      known_x0, known_mask: a clean value (shaped like `noise_x`) and a bool mask `B, K` of
        frames that are known. Those frames enter the denoiser clean at t=0 and come back
        bit-exact.

    Returns:
      The denoised x0, shaped and typed like `noise_x`.
    """
    solver = Solver(prediction, num_steps, sampler, eta, clip_x0)
    if noise_x.ndim < 2:
        raise ValueError(
            f"sampling.noise_x: expected axes (batch, frame, ...), got shape {noise_x.shape}"
        )
    if key is None and solver.needs_noise:
        raise ValueError(f"sampling.key: sampler {sampler!r} with eta={eta} needs a PRNG key")
    if (known_x0 is None) != (known_mask is None):
        raise ValueError("sampling.known_mask: known_x0 and known_mask must be given together")

    frame_shape = noise_x.shape[:2]
    trailing = (1,) * (noise_x.ndim - 2)
    if known_mask is not None:
        if known_mask.shape != frame_shape or known_x0.shape != noise_x.shape:
            raise ValueError(
                f"sampling.known_mask: expected mask {frame_shape} and known_x0 "
                f"{noise_x.shape}, got {known_mask.shape} and {known_x0.shape}"
            )
        known_mask_x = jnp.asarray(known_mask, bool).reshape(frame_shape + trailing)
        known_x0 = known_x0.astype(noise_x.dtype)

    def hold_known(x: jax.Array) -> jax.Array:
        if known_mask is None:
            return x
        return jnp.where(known_mask_x, known_x0, x)

    def step(x, index, t, t_prev, step_key):
        del index
        t_BK = jnp.full(frame_shape, t, jnp.int32)
        t_prev_BK = jnp.full(frame_shape, t_prev, jnp.int32)
        if known_mask is not None:
            t_BK, t_prev_BK = hold_known_times(t_BK, t_prev_BK, known_mask)
        x_in = hold_known(x)
        model_out = denoise_fn(x_in, t_BK)
        noise = None
        if solver.needs_noise:
            noise = jax.random.normal(jax.random.fold_in(step_key, 0), x.shape, x.dtype)
        return hold_known(solver.step(schedule, x_in, t_BK, t_prev_BK, model_out, noise))

    step_keys = jax.random.split(key, num_steps) if key is not None else None
    return reverse_scan(step, hold_known(noise_x), schedule, num_steps, step_keys)
