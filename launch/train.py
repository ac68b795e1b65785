r"""Trains a model from a config: the sDiT, or (with their configs) LEO's parts.

  python -m launch.train --config configs/sdit.py:tiny --workdir runs/sdit_tiny \
      [--config.training.num_steps=3000 ...]

The config's `task` field picks the trainer module `launch/train_<task>.py`, which exposes
`run(config, workdir, stop_at_step) -> summary`. Running again with the same workdir resumes
from its latest checkpoint.
"""

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow is only the event writer here.

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:tiny.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_STOP_AT = flags.DEFINE_integer(
    "stop_at_step", None, "End this run at this step, with a checkpoint; rerun to continue."
)
flags.mark_flags_as_required(["config", "workdir"])

TASKS = ("sdit", "animator", "lmdm")


class _QuietLibraries(logging.logging.Filter):
    """Keeps orbax's per-save INFO chatter out of the training log; warnings still show."""

    def filter(self, record):
        return record.levelno >= logging.logging.WARNING or "orbax" not in record.pathname


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from anchored_jax.parallel.multihost import initialize_distributed

    initialize_distributed()  # Before any device is touched; a no-op for a single process.
    config = _CONFIG.value
    task = config.get("task", "sdit")
    if task not in TASKS:
        sys.exit(f"error: task: expected one of {list(TASKS)}, got {task!r}")
    trainer = importlib.import_module(f"launch.train_{task}")
    trainer.run(config, _WORKDIR.value, stop_at_step=_STOP_AT.value)


if __name__ == "__main__":
    app.run(main)
