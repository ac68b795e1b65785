"""LMDM training from a config: motion-code windows (landmark stand-ins or an animator's
encoder), the task, the loop, and the final evaluation's report (`workdir/lmdm_eval.json`).
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from absl import logging

from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.config_checks import ConfigError, ensure_writable_workdir
from anchored_jax.training.loop import RUN_ERRORS, TrainData, train
from anchored_jax.training.tasks.lmdm import LmdmTask
from data_pipelines.motion_codes import (
    build_window_dataset,
    code_windows,
    extract_codes,
    read_code_file,
    write_code_file,
)

EVAL_FILE = "lmdm_eval.json"


def animator_motion_encoder(animator_workdir: str):
    """`frames_BHWC -> alpha_BM` of the latest usable checkpoint of an animator run."""
    # This restores the animator's checkpoint itself until the one checkpoint loader
    # (anchored_jax/training/inference_checkpoint.py) reads training runs of every task.
    from flax import nnx

    from anchored_jax.training.checkpointing import RunCheckpoints
    from anchored_jax.training.tasks.animator import AnimatorTask

    if not animator_workdir:
        raise ConfigError("data.animator_workdir: code_source=animator needs an animator run")
    probe = RunCheckpoints(
        animator_workdir, ml_collections.ConfigDict(dict(max_to_keep=None, async_save=False))
    )
    step = probe.latest_step()
    if step is None:
        raise ConfigError(f"data.animator_workdir: no checkpoint under {animator_workdir}")
    anim_config = ml_collections.ConfigDict(probe.restore_config(step))
    task = AnimatorTask(anim_config, validate=False)
    _, state = probe.restore_latest(jax.eval_shape(task.init))
    probe.close()
    encoder = nnx.merge(task.graphs.gen, state.params["gen"]).enc
    return jax.jit(lambda x_BHWC: encoder(x_BHWC)[2])


def load_codes(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
    """`[N, T, M]` codes of a split; the train split is cached in `data.code_file` if set."""
    data = config.data
    cache = data.code_file if split == "train" else ""
    if cache and os.path.exists(cache):
        return read_code_file(cache)
    encode = None
    if data.code_source == "animator":
        encode = animator_motion_encoder(data.animator_workdir)
    codes = extract_codes(data, split, motion_dim=config.model.motion_dim, encode_motion=encode)
    if cache:
        write_code_file(cache, codes)
    return codes


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        task = LmdmTask(config)
        workdir = ensure_writable_workdir(workdir)
        length, stride = config.model.length, config.data.window_stride
        train_windows = code_windows(load_codes(config, "train"), length, stride)
        test_windows = code_windows(load_codes(config, "test"), length, length)
        train_data = build_window_dataset(
            train_windows,
            batch_size=process_batch_size(config.training.batch_size),
            seed=config.data.seed,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
        )
    except (ValueError, OSError) as e:  # ConfigError, data-config errors, unreadable files
        sys.exit(f"error: {e}")
    data = TrainData(train_iter=iter(train_data), eval_data=test_windows)
    try:
        summary = train(task, workdir, data, stop_at_step=stop_at_step)
    except RUN_ERRORS as e:
        sys.exit(f"error: {e}")
    if summary.get("eval_step") == config.training.num_steps:
        if jax.process_index() == 0:
            with open(os.path.join(workdir, EVAL_FILE), "w") as f:
                json.dump(summary, f, indent=1)
        print(
            f"LMDM step {summary['step']}: |delta alpha| generated mean "
            f"{summary['generated_delta_mean']:.4f} std {summary['generated_delta_std']:.4f}; "
            f"held-out real mean {summary['real_delta_mean']:.4f} "
            f"std {summary['real_delta_std']:.4f}; "
            f"{config.logging.chain_frames}-frame chain norm by window "
            f"{[round(v, 2) for v in summary['chain_norm']['norm_mean']]}"
        )
    logging.info("Finished at step %d.", summary["step"])
    return summary
