"""sDiT training from a config: the task, its grain inputs, the loop, the closing line."""

import sys

import jax
import ml_collections
from absl import logging

from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.config_checks import ensure_writable_workdir
from anchored_jax.training.loop import RUN_ERRORS, TrainData, train
from anchored_jax.training.tasks.sdit import SDiTTask
from data_pipelines.pipeline import build_clip_dataset, check_model_fits_data


def read_data(config: ml_collections.ConfigDict) -> TrainData:
    """This process's train iterator and fixed held-out batches."""
    local_batch = process_batch_size(config.training.batch_size)
    datasets = {
        split: build_clip_dataset(
            config.data,
            split=split,
            batch_size=local_batch,
            seed=config.data.seed + offset,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
        )
        for split, offset in (("train", 0), ("test", 1))
    }
    eval_iter = iter(datasets["test"])
    eval_batches = [next(eval_iter) for _ in range(config.logging.eval_batches)]
    return TrainData(train_iter=iter(datasets["train"]), eval_data=eval_batches)


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        task = SDiTTask(config)
        check_model_fits_data(config.data, config.model)  # a latent cache's shape vs the model
        workdir = ensure_writable_workdir(workdir)
        data = read_data(config)
    except ValueError as e:  # ConfigError, or a data-config ValueError naming its field.
        sys.exit(f"error: {e}")
    try:
        summary = train(task, workdir, data, stop_at_step=stop_at_step)
    except RUN_ERRORS as e:
        sys.exit(f"error: {e}")
    logging.info("Finished: %s", summary)
    if "initial_eval_loss" in summary:
        print(
            f"held-out denoising loss: {summary['initial_eval_loss']:.4f} at step 0 -> "
            f"{summary['eval_loss']:.4f} (EMA {summary['eval_loss_ema']:.4f}) at step "
            f"{summary['eval_step']}; predicting zeros: {summary['eval_zeros_loss']:.4f}"
        )
    return summary
