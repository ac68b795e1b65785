"""LMDM training from a config: motion-code windows (an animator's encoder, cached; or
landmark stand-ins for tests), the task, the loop, and the final evaluation's report
(`workdir/lmdm_eval.json`).
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
from absl import logging

from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.config_checks import ensure_writable_workdir
from anchored_jax.training.loop import RUN_ERRORS, TrainData, train
from anchored_jax.training.tasks.lmdm import LmdmTask
from data_pipelines.lmdm_codes import load_codes
from data_pipelines.motion_codes import build_anchored_window_dataset, code_windows

EVAL_FILE = "lmdm_eval.json"


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        task = LmdmTask(config)
        workdir = ensure_writable_workdir(workdir)
        length = config.model.length
        test_windows = code_windows(load_codes(config, "test"), length, length)
        # One random anchored window per video visit: a conditioning code from anywhere in the
        # video, then `length` consecutive codes at a log-uniform gap from it.
        train_data = build_anchored_window_dataset(
            load_codes(config, "train"),
            length=length,
            gaps=config.data.window_gaps,
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
        print(f"LMDM step {summary['step']}, first-frame samples against held-out real windows:")
        for key, name in (("delta_mean", "mean"), ("delta_std", "std")):
            low, high = summary[f"{key}_rel_error_interval"]
            print(
                f"  |delta alpha| {name}: generated {summary['generated_' + key]:.4f}, real "
                f"{summary['real_' + key]:.4f} ({100 * summary[key + '_rel_error']:+.1f}%; 90% "
                f"interval {100 * low:+.1f}% to {100 * high:+.1f}%)"
            )
        print(
            f"  {config.logging.chain_frames}-frame chain norm by window "
            f"{[round(v, 2) for v in summary['chain_norm']['norm_mean']]}"
        )
    logging.info("Finished at step %d.", summary["step"])
    return summary
