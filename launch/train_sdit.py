"""sDiT training from a config: validation, grain inputs, then the library's training loop."""

import sys

import jax
import ml_collections
from absl import logging

from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.checkpointing import CheckpointMismatchError, CheckpointSaveError
from anchored_jax.training.config_checks import (
    ensure_writable_workdir,
    validate_sdit_config,
)
from anchored_jax.training.trainer import NonFiniteTrainingError, train_and_evaluate
from data_pipelines.pipeline import build_clip_dataset, check_model_fits_data


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        validate_sdit_config(config)
        check_model_fits_data(config.data, config.model)  # a latent cache's shape vs the model
        workdir = ensure_writable_workdir(workdir)
        n_proc, proc = jax.process_count(), jax.process_index()
        local_batch = process_batch_size(config.training.batch_size)
        datasets = {
            split: build_clip_dataset(
                config.data,
                split=split,
                batch_size=local_batch,
                seed=config.data.seed + offset,
                shard_index=proc,
                shard_count=n_proc,
            )
            for split, offset in (("train", 0), ("test", 1))
        }
    except ValueError as e:  # ConfigError, or a data-config ValueError naming its field.
        sys.exit(f"error: {e}")

    eval_iter = iter(datasets["test"])
    eval_batches = [next(eval_iter) for _ in range(config.logging.eval_batches)]
    try:
        summary = train_and_evaluate(
            config,
            workdir,
            train_iter=iter(datasets["train"]),
            eval_batches=eval_batches,
            stop_at_step=stop_at_step,
        )
    except (NonFiniteTrainingError, CheckpointMismatchError, CheckpointSaveError) as e:
        sys.exit(f"error: {e}")
    logging.info("Finished: %s", summary)
    if "initial_eval_loss" in summary:
        print(
            f"held-out denoising loss: {summary['initial_eval_loss']:.4f} at step 0 -> "
            f"{summary['eval_loss']:.4f} (EMA {summary['eval_loss_ema']:.4f}) at step "
            f"{summary['step']}; predicting zeros: {summary['eval_zeros_loss']:.4f}"
        )
    return summary
