r"""Trains the sDiT.

  python -m launch.train --config configs/sdit.py:tiny --workdir runs/sdit_tiny \
      [--config.training.num_steps=3000 ...]

Running again with the same workdir resumes from its latest checkpoint.
"""

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


class _QuietLibraries(logging.logging.Filter):
    """Keeps orbax's per-save INFO chatter out of the training log; warnings still show."""

    def filter(self, record):
        return record.levelno >= logging.logging.WARNING or "orbax" not in record.pathname


def main(argv):
    del argv
    logging.get_absl_handler().addFilter(_QuietLibraries())
    import jax

    from anchored_jax.training.config_checks import (
        ConfigError,
        ensure_writable_workdir,
        validate_sdit_config,
    )
    from anchored_jax.training.trainer import train_and_evaluate
    from data_pipelines.pipeline import build_clip_dataset

    config = _CONFIG.value
    try:
        validate_sdit_config(config)
        workdir = ensure_writable_workdir(_WORKDIR.value)
        batch_size = config.training.batch_size
        n_proc, proc = jax.process_count(), jax.process_index()
        if batch_size % n_proc:
            raise ConfigError(
                f"training.batch_size: {batch_size} is not divisible by {n_proc} processes"
            )
        train_data = build_clip_dataset(
            config.data,
            split="train",
            batch_size=batch_size // n_proc,
            seed=config.data.seed,
            shard_index=proc,
            shard_count=n_proc,
        )
        eval_data = build_clip_dataset(
            config.data,
            split="test",
            batch_size=batch_size // n_proc,
            seed=config.data.seed + 1,
            shard_index=proc,
            shard_count=n_proc,
        )
    except ValueError as e:  # ConfigError, or a data-config ValueError naming its field.
        sys.exit(f"error: {e}")

    eval_iter = iter(eval_data)
    eval_batches = [next(eval_iter) for _ in range(config.logging.eval_batches)]
    summary = train_and_evaluate(
        config,
        workdir,
        train_iter=iter(train_data),
        eval_batches=eval_batches,
        stop_at_step=_STOP_AT.value,
    )
    logging.info("Finished: %s", summary)
    if "initial_eval_loss" in summary:
        print(
            f"held-out denoising loss: {summary['initial_eval_loss']:.4f} at step 0 -> "
            f"{summary['eval_loss']:.4f} (EMA {summary['eval_loss_ema']:.4f}) at step "
            f"{summary['step']}; predicting zeros: {summary['eval_zeros_loss']:.4f}"
        )


if __name__ == "__main__":
    app.run(main)
