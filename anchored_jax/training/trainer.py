"""The sDiT training loop, top to bottom: writers, model and optimiser, restore, steps, loop.

The caller (launch/train.py) builds the data iterators, so this module never imports the
data pipelines: it takes a grain iterator, whose state it checkpoints, and a fixed list of
held-out batches. Every random draw is `fold_in(key, step)`, and the iterator state is saved
with the train state, so a resumed run repeats an uninterrupted one exactly.
"""

import json
import os
import signal
from collections.abc import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from anchored_jax.parallel.logical_sharding import use_rules
from anchored_jax.training.checkpointing import RunCheckpoints, write_run_config
from anchored_jax.training.sample_grid import make_sample_grid, write_grid_png
from anchored_jax.training.sdit_setup import build_model, make_sdit_setup
from anchored_jax.training.train_state import param_count

__all__ = [
    "NonFiniteTrainingError",
    "PreemptionFlag",
    "build_model",
    "evaluate",
    "train_and_evaluate",
]

EVAL_LOG = "eval_metrics.jsonl"


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive non-finite steps: the run stops, its checkpoints untouched."""


class PreemptionFlag:
    """Set by SIGTERM (what TPU VMs and SLURM send before preempting); the loop then saves."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # Not the main thread (e.g. inside a test runner): no handler.
            self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping.")
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def stop_at(self, step: int, checkpoints: RunCheckpoints) -> bool:
        """Whether to save and stop after `step`: a local SIGTERM, or (multi-host) the step
        every host agreed on after a preemption notice reached any of them."""
        return self.requested or checkpoints.reached_preemption(step)


def save_if_due(checkpoints, preemption, step, end_step, state, train_iter, config) -> bool:
    """Saves on the checkpoint cadence, at `end_step` and on preemption (`stop_at`); returns
    whether the loop must stop now. Every training loop ends its step with this."""
    preempted = preemption.stop_at(step, checkpoints)
    if step % config.checkpoint.every_steps == 0 or preempted or step == end_step:
        checkpoints.save(step, state, train_iter, config)
    return preempted


def close_run(checkpoints, writer) -> None:
    """Waits for the last asynchronous save, then closes the checkpoints and the writer."""
    checkpoints.wait_until_finished()
    checkpoints.close()
    writer.flush()


def evaluate(eval_step, params, eval_batches, key) -> dict[str, float]:
    """Mean held-out metrics over the fixed batches, with the same keys at every evaluation."""
    sums: dict[str, float] = {}
    for i, batch in enumerate(eval_batches):
        metrics = jax.device_get(eval_step(params, batch, jax.random.fold_in(key, i)))
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + float(value)
    return {name: total / len(eval_batches) for name, total in sums.items()}


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_iter: Iterator[Mapping[str, np.ndarray]],
    eval_batches: Sequence[Mapping[str, np.ndarray]],
    stop_at_step: int | None = None,
) -> dict[str, float]:
    """Trains until `config.training.num_steps`, resuming from the workdir's latest checkpoint.

    `stop_at_step` ends this run early, with a checkpoint, as a job with a time limit would;
    running again continues exactly where it stopped. Returns the last held-out evaluation
    (EMA and raw params) and, for a run that started at step 0, the first one.
    """
    training = config.training
    num_steps = training.num_steps
    host_eval_batches = list(eval_batches)
    is_main = jax.process_index() == 0

    # ------------------------------------------------------------------ writers
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    if is_main:
        write_run_config(workdir, config)

    # ------------------------------------------------------------------ mesh, model, steps
    setup = make_sdit_setup(config)
    mesh, rules = setup.mesh, setup.rules
    logging.info("Mesh %s over %d devices.", dict(mesh.shape), mesh.size)

    # ------------------------------------------------------------------ restore or initialise
    # Parameters and optimiser state are created (or restored) directly in their shardings.
    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    latest = checkpoints.latest_step()
    with jax.set_mesh(mesh), use_rules(rules):
        if latest is not None:
            logging.info("Resuming from %s at step %d.", checkpoints.directory, latest)
            state = checkpoints.restore(latest, setup.restore_target(), train_iter)
        else:
            state = setup.init_state()
    start_step = int(state.step)
    n_params = param_count(state.params)
    logging.info(
        "sDiT: %s parameters; starting at step %d of %d.", f"{n_params:,}", start_step, num_steps
    )
    if start_step == 0:
        writer.write_hparams({"num_params": n_params, **_flat_hparams(config)})

    train_step, eval_step = setup.train_step, setup.eval_step
    sample_grid = make_sample_grid(config, setup.graphdef, setup.schedule)  # None: no decoder
    eval_batches = [setup.to_device(batch) for batch in eval_batches]
    root_key = jax.random.key(config.seed)
    train_key, eval_key, sample_key = jax.random.split(root_key, 3)
    sample_batch = _first_clips(host_eval_batches, config.logging.sample_clips)

    def run_eval(step: int) -> dict[str, float]:
        metrics = evaluate(eval_step, state.params, eval_batches, eval_key)
        ema = evaluate(eval_step, state.ema_params, eval_batches, eval_key)
        metrics["eval_loss_ema"] = ema["eval_loss"]
        writer.write_scalars(step, metrics)
        if is_main:
            with open(os.path.join(workdir, EVAL_LOG), "a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        logging.info(
            "step %d: held-out loss %.4f (EMA %.4f); predicting zeros gives %.4f",
            step,
            metrics["eval_loss"],
            metrics["eval_loss_ema"],
            metrics["eval_zeros_loss"],
        )
        return metrics

    def write_samples(step: int) -> None:
        if sample_grid is None:
            return
        grid = sample_grid(state.ema_params, sample_batch, sample_key)
        writer.write_images(step, {"samples": grid[None]})
        if is_main:
            write_grid_png(grid, os.path.join(workdir, "samples", f"step_{step:07d}.png"))

    # ------------------------------------------------------------------ loop
    report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    with jax.set_mesh(mesh), use_rules(rules):
        first_eval = run_eval(start_step) if start_step == 0 else None
    last_eval = first_eval
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    end_step = num_steps if stop_at_step is None else min(stop_at_step, num_steps)
    with PreemptionFlag() as preemption, jax.set_mesh(mesh), use_rules(rules):
        while step < end_step:
            batch = setup.to_device(next(train_iter))
            state, metrics = train_step(state, batch, jax.random.fold_in(train_key, step))
            pending.append(metrics)
            step += 1
            report_progress(step)
            streak = int(state.nonfinite_streak)
            if streak:
                logging.warning(
                    "step %d: non-finite loss or gradient, update skipped (%d in a row, %d total)",
                    step, streak, int(state.nonfinite_total),
                )  # fmt: skip
            if streak >= training.max_nonfinite_steps:
                writer.flush()
                checkpoints.wait_until_finished()
                raise NonFiniteTrainingError(
                    f"training stopped at step {step}: {streak} consecutive non-finite steps "
                    f"(training.max_nonfinite_steps={training.max_nonfinite_steps}); the last "
                    f"checkpoint, step {checkpoints.latest_step()}, is intact"
                )
            if step % config.logging.log_every_steps == 0 or step == num_steps:
                means = jax.tree.map(lambda *xs: float(jnp.mean(jnp.stack(xs))), *pending)
                writer.write_scalars(step, {f"train_{k}": v for k, v in means.items()})
                writer.write_scalars(step, {"nonfinite_total": int(state.nonfinite_total)})
                pending = []
            if step % config.logging.eval_every_steps == 0 or step == num_steps:
                last_eval = run_eval(step)
            if step % config.logging.sample_every_steps == 0 or step == num_steps:
                write_samples(step)
            if save_if_due(checkpoints, preemption, step, end_step, state, train_iter, config):
                break
    close_run(checkpoints, writer)
    summary = {"step": step, **(last_eval or {})}
    if first_eval is not None:
        summary.update({f"initial_{k}": v for k, v in first_eval.items()})
    return summary


def _first_clips(batches: Sequence[Mapping[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    first = batches[0]
    return {k: np.asarray(v)[:n] for k, v in first.items()}


def _flat_hparams(config: ml_collections.ConfigDict) -> dict:
    flat = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, (int, float, str, bool)):
                    flat[f"{section}.{key}"] = value
        elif isinstance(values, (int, float, str, bool)):
            flat[section] = values
    return flat
