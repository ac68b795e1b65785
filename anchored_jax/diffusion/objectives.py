"""What the denoiser predicts (epsilon, v or x0), how to invert it, and the training loss.

With a = sqrt(alpha_bar_t) and s = sqrt(1 - alpha_bar_t) (so a^2 + s^2 = 1) and
x_t = a x0 + s eps, the three parameterisations are
  epsilon: eps;   x0: x0;   v: a eps - s x0   (Salimans & Ho 2022, "v-prediction").
`t` is prefix-shaped like everywhere in `anchored_jax.diffusion` (e.g. `t_BK` for `x_BKHWC`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.schedules import Schedule, coefficient_at

PREDICTION_KINDS = ("epsilon", "v", "x0")


def check_prediction_kind(kind: str) -> None:
    """Raises the user-facing error for a prediction kind outside PREDICTION_KINDS."""
    if kind not in PREDICTION_KINDS:
        raise ValueError(
            f"diffusion.prediction: expected one of {list(PREDICTION_KINDS)}, got {kind!r}"
        )


def _signal_and_noise_scales(
    schedule: Schedule, t: jax.Array, x_shape: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    a = coefficient_at(schedule.sqrt_alphas_cumprod, t, x_shape)
    s = coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_shape)
    return a, s


def prediction_target(
    kind: str, schedule: Schedule, x0: jax.Array, noise: jax.Array, t: jax.Array
) -> jax.Array:
    """The regression target for `kind`, given the clean data, the noise and per-frame t."""
    check_prediction_kind(kind)
    if kind == "epsilon":
        return noise
    if kind == "x0":
        return x0
    a, s = _signal_and_noise_scales(schedule, t, x0.shape)
    return a * noise - s * x0


def predict_x0_and_eps(
    kind: str, schedule: Schedule, x_t: jax.Array, t: jax.Array, model_out: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Inverts `kind`'s parameterisation: returns (x0_hat, eps_hat) from the model output.

    Near the ends of the schedule one of a, s is tiny, so recovering x0 from an epsilon
    prediction at t ~ T (or eps from an x0 prediction at t ~ 0) amplifies float32 error;
    v-prediction has no such division.
    """
    check_prediction_kind(kind)
    a, s = _signal_and_noise_scales(schedule, t, x_t.shape)
    if kind == "epsilon":
        eps = model_out
        x0 = (x_t - s * eps) / a
    elif kind == "x0":
        x0 = model_out
        eps = (x_t - a * x0) / s
    else:
        # From x_t = a x0 + s eps and v = a eps - s x0 with a^2 + s^2 = 1.
        x0 = a * x_t - s * model_out
        eps = s * x_t + a * model_out
    return x0, eps


def eps_from_x0(schedule: Schedule, x_t: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
    """The noise consistent with x_t and a (possibly clipped) x0 estimate."""
    a, s = _signal_and_noise_scales(schedule, t, x_t.shape)
    return (x_t - a * x0) / s


def diffusion_loss(
    kind: str,
    schedule: Schedule,
    model_out: jax.Array,
    x0: jax.Array,
    noise: jax.Array,
    t: jax.Array,
    weight: jax.Array | None = None,
) -> jax.Array:
    """Mean squared error of `model_out` against `kind`'s target, as a float32 scalar.

    `weight` is prefix-shaped like `t` (e.g. `weight_BK` of 0/1 that drops known anchor frames
    or padding). The mean runs over weighted elements only: sum(w * err^2) / sum(w) with w
    broadcast over the trailing axes. All-zero weights give a loss of 0, not NaN.
    """
    target = prediction_target(kind, schedule, x0, noise, t)
    sq_err = jnp.square(model_out.astype(jnp.float32) - target.astype(jnp.float32))
    if weight is None:
        return jnp.mean(sq_err)
    weight = jnp.asarray(weight, jnp.float32)
    if tuple(sq_err.shape[: weight.ndim]) != weight.shape:
        raise ValueError(
            f"diffusion.loss_weight: expected a shape that prefixes {sq_err.shape}, "
            f"got {weight.shape}"
        )
    weight_full = jnp.broadcast_to(
        weight.reshape(weight.shape + (1,) * (sq_err.ndim - weight.ndim)), sq_err.shape
    )
    total = jnp.sum(weight_full)
    return jnp.where(total > 0, jnp.sum(weight_full * sq_err) / jnp.maximum(total, 1e-12), 0.0)


# Timestep weightings of a loss, each a w(SNR) on the squared error in x0; "uniform" weighs
# every timestep alike in the prediction's own space. The others: w = min(SNR + offset, gamma).
_SNR_OFFSETS = {"min_snr": 0.0, "min_snr_plus_one": 1.0}
LOSS_WEIGHTINGS = ("uniform", *_SNR_OFFSETS)


def snr_loss_weight(
    schedule: Schedule, t: jax.Array, prediction: str, weighting: str, gamma: float
) -> jax.Array:
    """Per-timestep loss weights, shaped like `t`, that make the error of `prediction`'s
    target count as `w(SNR)` x the error in x0 (SNR = alpha_bar / (1 - alpha_bar)):

    - `min_snr`: w = min(SNR, gamma) (Hang et al. 2023, "Efficient Diffusion Training via
      Min-SNR Weighting Strategy"; gamma 5). Noisy timesteps weigh ~SNR, nearly nothing.
    - `min_snr_plus_one`: w = min(SNR + 1, gamma): v-prediction's own weighting (SNR + 1),
      capped at gamma, so noisy timesteps keep x0's weight 1.

    An epsilon error is SNR x the x0 error and a v error SNR + 1 times it (squared), so their
    weights are w / SNR and w / (SNR + 1).
    """
    check_prediction_kind(prediction)
    if weighting not in _SNR_OFFSETS:
        raise ValueError(
            f"diffusion.loss_weighting: expected one of {list(_SNR_OFFSETS)}, got {weighting!r}"
        )
    alpha_bar = schedule.alphas_cumprod[t]
    snr = alpha_bar / jnp.maximum(1.0 - alpha_bar, 1e-12)
    w = jnp.minimum(snr + _SNR_OFFSETS[weighting], gamma)
    return {"x0": w, "epsilon": w / snr, "v": w / (snr + 1.0)}[prediction]
