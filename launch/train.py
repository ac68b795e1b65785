r"""Trains a model from a config: the sDiT, or (with their configs) LEO's parts.

  python -m launch.train --config configs/sdit.py:tiny --workdir runs/sdit_tiny \
      [--config.training.num_steps=3000 ...]

The config's `task` field picks the entry point in `TASKS`: each reads its task's data and
runs the one training loop (anchored_jax/training/loop.py) on its task
(anchored_jax/training/tasks/). Running again with the same workdir resumes from its latest
usable checkpoint.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow is only the event writer here.

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anchored_jax.training.config_checks import ConfigError, parse_flags_or_exit  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:tiny.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_STOP_AT = flags.DEFINE_integer(
    "stop_at_step", None, "End this run at this step, with a checkpoint; rerun to continue."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (else JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the job (else JAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's id, 0..num_processes-1 (else JAX_PROCESS_ID)."
)
flags.mark_flags_as_required(["config", "workdir"])


def _tasks() -> dict:
    """Task name -> `run(config, workdir, stop_at_step) -> summary`; imported on use, so that
    flag errors come before JAX loads."""
    from launch import train_animator, train_lmdm, train_sdit

    return {"sdit": train_sdit.run, "animator": train_animator.run, "lmdm": train_lmdm.run}


TASKS = ("sdit", "animator", "lmdm")


class _QuietLibraries(logging.logging.Filter):
    """Keeps orbax's per-save INFO chatter out of the training log; warnings still show."""

    def filter(self, record):
        return record.levelno >= logging.logging.WARNING or "orbax" not in record.pathname


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from anchored_jax.parallel.multihost import initialize_distributed, stop_at_once_on_error_exit

    try:  # Before any device is touched; a no-op for a single process.
        initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    except ValueError as e:
        sys.exit(f"error: {e}")
    with stop_at_once_on_error_exit():  # an error one host alone sees stops the job at once
        _train(_CONFIG.value, _WORKDIR.value, _STOP_AT.value)


def _train(config, workdir: str, stop_at_step: int | None) -> None:
    task = config.get("task", "sdit")
    if task not in TASKS:
        sys.exit(f"error: task: expected one of {list(TASKS)}, got {task!r}")
    from data_pipelines.run_config_checks import validate_run_config

    try:  # every field of every task, and the data's first record, before any compile
        validate_run_config(config)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    _tasks()[task](config, workdir, stop_at_step=stop_at_step)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
