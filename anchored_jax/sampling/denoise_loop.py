"""The jitted reverse-diffusion loop that turns noise into clips, with per-frame timesteps.

`sample` runs one `lax.scan` over a descending timestep spacing, calling the denoiser once per
step. Data is laid out with batch (or segment) and frame as its first two axes, `x_BKHWC`;
the loop hands the denoiser per-frame timesteps `t_BK`. Frames named in `known_mask` (a known
anchor such as the reenactment source image) are fed clean at per-frame t=0 on every step and
returned exactly, so the model sees them as the clean context it was trained with.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.objectives import check_prediction_kind
from anchored_jax.diffusion.samplers import ddim_step, ddpm_step, timestep_spacing
from anchored_jax.diffusion.schedules import Schedule

SAMPLER_KINDS = ("ddim", "ddpm")

# denoise_fn(x_t_BK..., t_BK) -> model output shaped like x_t (epsilon, v or x0 per `prediction`).
DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
# post_step_fn(x_prev_BK..., t_prev_BK, key) -> x_prev_BK...; e.g. averaging a shared anchor.
PostStepFn = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]


def _is_zero(eta: float | jax.Array) -> bool:
    return isinstance(eta, (int, float)) and eta == 0.0


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
    post_step_fn: PostStepFn | None = None,
) -> jax.Array:
    """Denoises `noise_x` (shape B, K, ...; axis 0 batch/segment, axis 1 frame) to x0.

    Args:
      denoise_fn: `(x_t, t_BK) -> model_out`, with `t_BK` int32 of shape `noise_x.shape[:2]`.
      schedule: the training schedule; `num_steps` timesteps are taken from it by
        `timestep_spacing` (T-1 down to 0, evenly spaced), and the last step lands on x0.
      num_steps, prediction, sampler, eta, clip_x0: static Python values. `sampler="ddim"`
        is deterministic for eta=0. `sampler="ddpm"` is ancestral sampling on the same
        spacing: `num_steps == schedule.num_timesteps` is the original full chain, fewer steps
        a respaced chain with each step's effective beta.
      key: randomness for DDPM / DDIM with eta > 0 / `post_step_fn`; step i uses
        `split(key, num_steps)[i]`, so a key fixes the output.
      known_x0, known_mask: a clean value (shaped like `noise_x`) and a bool mask `B, K` of
        frames that are known. Those frames enter the denoiser clean at t=0 and come back
        bit-exact.
      post_step_fn: optional `(x_prev, t_prev_BK, key) -> x_prev` applied after every step,
        before known frames are restored (the hook for averaging a generated anchor across
        segments, or for re-noising a source anchor instead of holding it clean).

    Returns:
      The denoised x0, shaped and typed like `noise_x`.
    """
    if sampler not in SAMPLER_KINDS:
        raise ValueError(
            f"sampling.sampler: expected one of {list(SAMPLER_KINDS)}, got {sampler!r}"
        )
    check_prediction_kind(prediction)
    if noise_x.ndim < 2:
        raise ValueError(
            f"sampling.noise_x: expected axes (batch, frame, ...), got shape {noise_x.shape}"
        )
    needs_noise = sampler == "ddpm" or not _is_zero(eta)
    if key is None and (needs_noise or post_step_fn is not None):
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

    t_S = timestep_spacing(schedule.num_timesteps, num_steps)
    t_prev_S = jnp.concatenate([t_S[1:], jnp.full((1,), -1, jnp.int32)])
    keys_S = jax.random.split(key, num_steps) if key is not None else jnp.zeros((num_steps,))

    def step(x: jax.Array, per_step: tuple) -> tuple[jax.Array, None]:
        t, t_prev, step_key = per_step
        t_BK = jnp.full(frame_shape, t, jnp.int32)
        t_prev_BK = jnp.full(frame_shape, t_prev, jnp.int32)
        if known_mask is not None:
            # Known frames are clean context: t=0 in, and their own "step" lands on x0.
            t_BK = jnp.where(known_mask, 0, t_BK)
            t_prev_BK = jnp.where(known_mask, -1, t_prev_BK)
        x_in = hold_known(x)
        model_out = denoise_fn(x_in, t_BK)
        noise = None
        if needs_noise:
            noise = jax.random.normal(jax.random.fold_in(step_key, 0), x.shape, x.dtype)
        if sampler == "ddim":
            x_prev = ddim_step(
                prediction, schedule, x_in, t_BK, t_prev_BK, model_out, eta, noise, clip_x0
            )
        else:
            x_prev = ddpm_step(
                prediction, schedule, x_in, t_BK, model_out, noise, t_prev_BK, clip_x0
            )
        if post_step_fn is not None:
            hook_key = jax.random.fold_in(step_key, 1) if key is not None else None
            x_prev = post_step_fn(x_prev, t_prev_BK, hook_key).astype(x.dtype)
        return hold_known(x_prev), None

    x0, _ = jax.lax.scan(step, hold_known(noise_x), (t_S, t_prev_S, keys_S))
    return x0
