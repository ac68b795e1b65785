"""The run-config checks that need the data pipelines: the data section's own fields and what
only reading the data can tell, still before anything compiles.

`validate_run_config` is what `launch.train` calls: the library's `validate_config` (every
model, optimiser, checkpoint and logging field of every task), then `validate_data_config` for
the sDiT's data section, then cheap reads of the data itself: the first training record's
landmark count, an LMDM's animator `motion_dim` and its code cache's width. Each problem is one
`ConfigError` line naming the field. It lives here, not in the library, because the library
does not import the data pipelines.
"""

import json
import os

import ml_collections
import numpy as np
from absl import logging as absl_logging

from anchored_jax.training.config_checks import ConfigError, validate_config
from data_pipelines.pipeline import make_source, validate_data_config


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_run_config(config: ml_collections.ConfigDict, *, check_data: bool = True) -> None:
    """Every check of a run's config for any task; `check_data` also reads the data."""
    validate_config(config)
    if config.get("task", "sdit") == "sdit":
        try:
            validate_data_config(config.data)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if check_data:
        check_config_against_data(config)


def check_config_against_data(config: ml_collections.ConfigDict) -> None:
    """What can only be known by reading: the data's landmark count (first record), an LMDM's
    animator `motion_dim` and its code cache's width."""
    task = config.get("task", "sdit")
    if task == "sdit" and config.model.landmark_condition:
        _check_landmarks_of_first_record(config)
    if task == "lmdm":
        _check_lmdm_codes(config)


def _check_landmarks_of_first_record(config) -> None:
    # The source logs its scan summary at INFO; the training run logs it again when it starts,
    # and a refusal here must stay the only line.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        source = make_source(config.data, "train")
        record = source[0]
    except (ValueError, OSError) as e:
        raise ConfigError(str(e).splitlines()[0] if str(e) else repr(e)) from None
    finally:
        absl_logging.set_verbosity(verbosity)
    landmarks_TLC = getattr(record, "landmarks_TLC", None)
    if landmarks_TLC is None:
        return
    points, dims = landmarks_TLC.shape[1:]
    _expect(
        points == config.model.num_landmarks,
        f"model.num_landmarks: the data ({config.data.source} under {config.data.root or '-'}) "
        f"has {points} landmarks per frame, got {config.model.num_landmarks} "
        f"(set --config.model.num_landmarks={points})",
    )
    _expect(
        dims == config.model.landmark_dim,
        f"model.landmark_dim: the data has {dims} coordinates per landmark, "
        f"got {config.model.landmark_dim}",
    )


def _check_lmdm_codes(config) -> None:
    data, motion_dim = config.data, config.model.motion_dim
    if data.code_source == "animator":
        path = os.path.join(data.animator_workdir, "config.json")
        try:
            with open(path) as f:
                animator = json.load(f)
            animator_dim = animator["model"]["motion_dim"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(
                f"data.animator_workdir: expected an animator run with {path} ({e})"
            ) from None
        _expect(
            motion_dim == animator_dim,
            f"model.motion_dim: the animator in {data.animator_workdir} makes {animator_dim}-d "
            f"motion codes, got {motion_dim}",
        )
    if data.code_file and os.path.exists(data.code_file):
        try:
            with np.load(data.code_file, allow_pickle=False) as f:
                width = f["codes"].shape[-1]
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"data.code_file: expected an .npz with 'codes' ({e})") from None
        _expect(
            width == motion_dim,
            f"model.motion_dim: the code cache {data.code_file} holds {width}-d codes, "
            f"got {motion_dim}",
        )
