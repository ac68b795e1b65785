"""The one reverse-diffusion stepper every sampler runs: the solver, its timesteps, its loop.

A `Solver` fixes the static choices of a reverse chain (prediction kind, DDIM or DDPM, steps,
eta, x0 clipping) and takes one step `x_t -> x_{t_prev}` with per-frame timesteps.
`reverse_scan` walks its timesteps in one `lax.scan`, handing a step body the step's index,
`t`, `t_prev` and key. The plain sampler (`sampling.denoise_loop`), the anchored sampler, the
LMDM's motion sampler and the exported sampler all step through these two, so the solver
maths and the known-frame convention (`hold_known_times`) live in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.objectives import check_prediction_kind
from anchored_jax.diffusion.samplers import ddim_step, ddpm_step, timestep_spacing
from anchored_jax.diffusion.schedules import Schedule

SAMPLER_KINDS = ("ddim", "ddpm")

# body(x, index, t, t_prev, step_key) -> x after the step; t and t_prev are int32 scalars.
StepBody = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Solver:
    """Static choices of a reverse chain; hashable, so a jit static argument."""

    prediction: str  # epsilon | v | x0: what the model outputs
    num_steps: int
    sampler: str = "ddim"  # ddim (deterministic at eta=0) | ddpm (ancestral, respaced)
    eta: float = 0.0  # DDIM stochasticity
    clip_x0: bool = False  # clip the x0 estimate to [-1, 1] (pixels only)

    def __post_init__(self):
        if self.sampler not in SAMPLER_KINDS:
            raise ValueError(
                f"sampling.sampler: expected one of {list(SAMPLER_KINDS)}, got {self.sampler!r}"
            )
        check_prediction_kind(self.prediction)

    @property
    def needs_noise(self) -> bool:
        """Whether a step draws noise (DDPM, or DDIM with eta > 0)."""
        return self.sampler == "ddpm" or not (
            isinstance(self.eta, (int, float)) and self.eta == 0.0
        )

    def step(
        self,
        schedule: Schedule,
        x_t: jax.Array,
        t: jax.Array,
        t_prev: jax.Array,
        model_out: jax.Array,
        noise: jax.Array | None = None,
    ) -> jax.Array:
        """One step `x_t -> x_{t_prev}`; `t`, `t_prev` prefix-shaped like `x_t` (`t_BK`).

        Where `t_prev < 0` the step lands on the x0 estimate. `noise` (shaped like `x_t`) is
        needed when `needs_noise`. A learned-sigma model's output (2C channels: the
        prediction, then the variance interpolation) steps with its first C channels.
        """
        model_out = prediction_channels(model_out, x_t)
        if self.sampler == "ddim":
            return ddim_step(
                self.prediction, schedule, x_t, t, t_prev, model_out, self.eta, noise,
                self.clip_x0,
            )  # fmt: skip
        return ddpm_step(self.prediction, schedule, x_t, t, model_out, noise, t_prev, self.clip_x0)


def prediction_channels(model_out: jax.Array, x_t: jax.Array) -> jax.Array:
    """The model's prediction for `x_t`: all of `model_out`, or the first C of a learned-sigma
    head's 2C channels (as DiT's own sampling splits its output; facebookresearch/DiT)."""
    C = x_t.shape[-1]
    if model_out.shape[-1] == 2 * C and model_out.shape[:-1] == x_t.shape[:-1]:
        return model_out[..., :C]
    return model_out


def hold_known_times(
    t_BK: jax.Array, t_prev_BK: jax.Array, known_BK: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Known (clean) frames enter at t=0 and their own step lands on x0 (`t_prev = -1`).

    This is how training shows a known frame (per-frame t=0), so a known anchor among noisy
    frames is clean context rather than a frame to denoise.
    """
    return jnp.where(known_BK, 0, t_BK), jnp.where(known_BK, -1, t_prev_BK)


def reverse_scan(
    body: StepBody,
    x: jax.Array,
    schedule: Schedule,
    num_steps: int,
    step_keys: jax.Array | None = None,
) -> jax.Array:
    """Runs `body` over the `num_steps` timesteps (T-1 down to 0) in one `lax.scan`.

    step_keys: `[num_steps]` keys, one per step (the caller fixes how they are derived, so
      a key fixes the output); None when no step is random.
    """
    t_S = timestep_spacing(schedule.num_timesteps, num_steps)
    t_prev_S = jnp.concatenate([t_S[1:], jnp.full((1,), -1, jnp.int32)])
    if step_keys is None:
        step_keys = jnp.zeros((num_steps,))

    def scan_body(x, per_step):
        return body(x, *per_step), None

    x0, _ = jax.lax.scan(scan_body, x, (jnp.arange(num_steps), t_S, t_prev_S, step_keys))
    return x0
