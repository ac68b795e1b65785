"""Discrete diffusion maths: schedules, prediction targets and losses, sampler steps, guidance."""

from anchored_jax.diffusion.guidance import guided_output
from anchored_jax.diffusion.objectives import (
    PREDICTION_KINDS,
    diffusion_loss,
    predict_x0_and_eps,
    prediction_target,
)
from anchored_jax.diffusion.samplers import (
    ddim_step,
    ddpm_posterior,
    ddpm_step,
    timestep_spacing,
)
from anchored_jax.diffusion.schedules import (
    SCHEDULE_KINDS,
    Schedule,
    alpha_bar_at,
    coefficient_at,
    make_schedule,
    q_sample,
)

__all__ = [
    "PREDICTION_KINDS",
    "SCHEDULE_KINDS",
    "Schedule",
    "alpha_bar_at",
    "coefficient_at",
    "ddim_step",
    "ddpm_posterior",
    "ddpm_step",
    "diffusion_loss",
    "guided_output",
    "make_schedule",
    "predict_x0_and_eps",
    "prediction_target",
    "q_sample",
    "timestep_spacing",
]
