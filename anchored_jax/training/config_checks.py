"""Checks a run's config before anything expensive starts.

Each problem becomes one `ConfigError` line naming the field and what was expected, so a typo in
a sweep fails in a second instead of after compilation, and never as a traceback wall.
"""

import os
import tempfile

import ml_collections

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.parallel.logical_sharding import rules_from_config
from anchored_jax.parallel.mesh import build_mesh, data_parallel_size
from anchored_jax.training.sdit_step import TIMESTEP_MODES

PREDICTIONS = ("epsilon", "v", "x0")


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the field."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(value, field: str, choices) -> None:
    _expect(value in choices, f"{field}: expected one of {list(choices)}, got {value!r}")


def validate_sdit_config(config: ml_collections.ConfigDict) -> SDiTConfig:
    """Validates the model, diffusion and training sections; returns the model config."""
    try:
        model_config = SDiTConfig(**config.model.to_dict())
        make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _choice(config.diffusion.prediction, "diffusion.prediction", PREDICTIONS)
    training = config.training
    _choice(training.timesteps, "training.timesteps", TIMESTEP_MODES)
    _expect(
        training.batch_size > 0, f"training.batch_size: expected > 0, got {training.batch_size}"
    )
    _expect(training.num_steps > 0, f"training.num_steps: expected > 0, got {training.num_steps}")
    _expect(
        training.max_nonfinite_steps >= 1,
        f"training.max_nonfinite_steps: expected >= 1, got {training.max_nonfinite_steps}",
    )
    for name in ("identity_drop_prob", "landmark_drop_prob", "known_anchor_prob"):
        p = training[name]
        _expect(0.0 <= p <= 1.0, f"training.{name}: expected a probability in [0, 1], got {p}")
    _expect(
        0.0 <= training.ema_decay < 1.0,
        f"training.ema_decay: expected a value in [0, 1), got {training.ema_decay}",
    )
    data = config.data
    _expect(
        data.clip_frames <= model_config.max_frames,
        f"data.clip_frames: K={data.clip_frames} is larger than "
        f"model.max_frames={model_config.max_frames}",
    )
    # Pixel sources: the model sees the frames themselves. A latent cache's shape is checked
    # against the model where the cache is read (data_pipelines.pipeline.check_model_fits_data).
    if data.source != "latents":
        _expect(
            model_config.in_channels == 3,
            f"model.in_channels: data.source {data.source!r} gives 3-channel pixel frames, got "
            f"{model_config.in_channels} (VAE latents are read with data.source='latents')",
        )
        _expect(
            data.image_size == model_config.image_size,
            f"model.image_size: pixel models need data.image_size ({data.image_size}), "
            f"got {model_config.image_size}",
        )
    for name in ("log_every_steps", "eval_every_steps", "sample_every_steps"):
        _expect(
            config.logging[name] > 0, f"logging.{name}: expected > 0, got {config.logging[name]}"
        )
    _expect(
        config.checkpoint.every_steps > 0,
        f"checkpoint.every_steps: expected > 0, got {config.checkpoint.every_steps}",
    )
    try:
        mesh = build_mesh(config.mesh)
        rules_from_config(config.sharding.rules)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ways = data_parallel_size(mesh)
    _expect(
        training.batch_size % ways == 0,
        f"training.batch_size: {training.batch_size} is not divisible by the {ways}-way "
        "data parallelism of mesh.ici (data x fsdp)",
    )
    return model_config


def ensure_writable_workdir(workdir: str) -> str:
    """Creates the workdir if needed and proves a file can be written there."""
    _expect(bool(workdir), "--workdir: expected a directory path, got an empty string")
    path = os.path.abspath(workdir)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe_"):
            pass
    except OSError as e:
        raise ConfigError(f"--workdir: cannot write to {path} ({e.strerror or e})") from None
    return path
