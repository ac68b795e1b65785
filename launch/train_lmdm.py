"""LMDM training from a config: validation, motion-code windows, loop, final evaluation.

The evaluation at the end compares the EMA model's first-frame-conditioned samples with
held-out real windows by per-step delta statistics (mean and std of |alpha_{t+1} - alpha_t|),
and chains `logging.chain_frames` frames to report the motion norm over time.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from absl import logging

from anchored_jax.models.leo_lmdm import LmdmConfig
from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.sampling.leo_motion_generation import (
    chain_motion,
    delta_statistics,
    motion_norm_statistics,
    sample_motion,
)
from anchored_jax.training.config_checks import ConfigError, ensure_writable_workdir
from anchored_jax.training.leo_lmdm_loop import train_lmdm
from data_pipelines.motion_codes import (
    build_anchored_window_dataset,
    cached_codes,
    code_windows,
    params_digest,
)

EVAL_FILE = "lmdm_eval.json"


def validate_lmdm_config(config: ml_collections.ConfigDict) -> None:
    """One ConfigError line for the first bad field."""
    try:
        LmdmConfig(**config.model.to_dict())
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    training, diffusion = config.training, config.diffusion
    for name in ("batch_size", "num_steps"):
        if training[name] < 1:
            raise ConfigError(f"training.{name}: expected >= 1, got {training[name]}")
    if not training.learning_rate > 0:
        raise ConfigError(f"training.learning_rate: expected > 0, got {training.learning_rate}")
    if not 0 <= diffusion.condition_dropout < 1:
        raise ConfigError(
            f"diffusion.condition_dropout: expected in [0, 1), got {diffusion.condition_dropout}"
        )
    if diffusion.sample_steps < 1:
        raise ConfigError(f"diffusion.sample_steps: expected >= 1, got {diffusion.sample_steps}")
    if config.data.window_stride < 1:
        raise ConfigError(f"data.window_stride: expected >= 1, got {config.data.window_stride}")
    for name in ("log_every_steps", "eval_sequences", "chain_sequences"):
        if config.logging[name] < 1:
            raise ConfigError(f"logging.{name}: expected >= 1, got {config.logging[name]}")
    if config.logging.chain_frames < 2:
        raise ConfigError(f"logging.chain_frames: expected >= 2, got {config.logging.chain_frames}")
    if config.checkpoint.every_steps < 1:
        raise ConfigError(
            f"checkpoint.every_steps: expected >= 1, got {config.checkpoint.every_steps}"
        )


def animator_motion_encoder(animator_workdir: str):
    """`frames_BHWC -> alpha_BM` of the latest checkpoint of an animator run."""
    import optax
    from flax import nnx

    from anchored_jax.training.checkpointing import RunCheckpoints, abstract_like
    from anchored_jax.training.leo_animator_step import init_animator

    if not animator_workdir:
        raise ConfigError("data.animator_workdir: code_source=animator needs an animator run")
    if not os.path.isdir(animator_workdir):
        raise ConfigError(
            f"data.animator_workdir: no animator run at {animator_workdir} (train one with "
            f"configs/animator.py, or set data.code_source=landmarks for stand-in codes)"
        )
    probe = RunCheckpoints(
        animator_workdir, ml_collections.ConfigDict(dict(max_to_keep=1, async_save=False))
    )
    step = probe.latest_step()
    if step is None:
        raise ConfigError(f"data.animator_workdir: no checkpoint under {animator_workdir}")
    anim_config = ml_collections.ConfigDict(probe.restore_config(step))
    graphs, state = init_animator(anim_config, 0, optax.adam(1e-3), optax.adam(1e-3))
    state = probe.restore(step, abstract_like(state))
    probe.close()
    encoder = nnx.merge(graphs.gen, state.gen_params).enc
    digest = params_digest(jax.tree.leaves(nnx.state(encoder, nnx.Param)))
    return jax.jit(lambda x_BHWC: encoder(x_BHWC)[2]), digest


def load_codes(config: ml_collections.ConfigDict, split: str) -> np.ndarray:
    """`[N, T, M]` codes of a split (animator codes cached by the animator's digest)."""
    return cached_codes(
        config.data,
        split,
        motion_dim=config.model.motion_dim,
        load_encoder=lambda: animator_motion_encoder(config.data.animator_workdir),
    )


def evaluate(config, summary: dict, test_windows_WLM: np.ndarray) -> dict:
    """Delta statistics of generated vs held-out windows, and the chained motion norm."""
    graphdef, params, schedule = summary["graphdef"], summary["ema_params"], summary["schedule"]
    n = min(config.logging.eval_sequences, len(test_windows_WLM))
    real_BLM = test_windows_WLM[np.random.default_rng(0).permutation(len(test_windows_WLM))[:n]]
    common = dict(num_steps=config.diffusion.sample_steps, prediction=config.diffusion.prediction)
    key = jax.random.key(config.seed + 2)
    generated = sample_motion(
        graphdef, params, schedule, real_BLM[:, 0], key, length=config.model.length, **common
    )
    chained = chain_motion(
        graphdef,
        params,
        schedule,
        real_BLM[: config.logging.chain_sequences, 0],
        jax.random.fold_in(key, 1),
        num_frames=config.logging.chain_frames,
        length=config.model.length,
        **common,
    )
    real, gen = delta_statistics(real_BLM), delta_statistics(generated)
    return {
        "real_delta_mean": real["delta_mean"],
        "real_delta_std": real["delta_std"],
        "generated_delta_mean": gen["delta_mean"],
        "generated_delta_std": gen["delta_std"],
        "chain_finite": bool(np.isfinite(np.asarray(chained)).all()),
        "chain_norm": motion_norm_statistics(chained),
        "real_norm_mean": float(np.linalg.norm(real_BLM, axis=-1).mean()),
    }


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        validate_lmdm_config(config)
        workdir = ensure_writable_workdir(workdir)
        n_proc, proc = jax.process_count(), jax.process_index()
        local_batch = process_batch_size(config.training.batch_size)
        length, stride = config.model.length, config.data.window_stride
        del stride  # consecutive windows are drawn at random starts by the anchored reader
        test_windows = code_windows(load_codes(config, "test"), length, length)
        train = build_anchored_window_dataset(
            load_codes(config, "train"),
            length=length,
            gaps=config.data.window_gaps,
            batch_size=local_batch,
            seed=config.data.seed,
            shard_index=proc,
            shard_count=n_proc,
        )
    except (ValueError, OSError) as e:  # ConfigError, data-config errors, unreadable files
        sys.exit(f"error: {e}")

    summary = train_lmdm(config, workdir, train_iter=iter(train), stop_at_step=stop_at_step)
    if summary["step"] >= config.training.num_steps:
        summary.update(evaluate(config, summary, test_windows))
        report = {
            k: v
            for k, v in summary.items()
            if k not in ("graphdef", "ema_params", "params", "schedule")
        }
        if proc == 0:
            with open(os.path.join(workdir, EVAL_FILE), "w") as f:
                json.dump(report, f, indent=1)
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
