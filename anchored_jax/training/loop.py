"""The one training loop: the sDiT, the LEO animator and the LMDM all train through `train`.

Read top to bottom, in stages (big_vision's train.py layout): mesh, input, model and
optimiser, shardings, step, restore, loop (log, eval, samples, checkpoint, preemption), close.
A *task* (anchored_jax/training/tasks/) supplies only what differs between models: the config
check, the initial state, the pure step, the batch layout, the evaluation and an optional
figure. Every task therefore gets the same mesh with in/out shardings and donation, the
non-finite guard and the EMA (train_state.guard_and_average), global batches assembled from
each process's slice, preemption saves, exact resume and the clu writers.

Every random draw is `fold_in(key, step)` and the data-iterator state is saved with the train
state, so a resumed run repeats an uninterrupted one exactly. The steps between a run's last
checkpoint and a kill are trained and logged again on resume, with the same values: TensorBoard
then holds those steps twice, and its readers keep the later record.

The caller (launch/train.py) builds the data iterators, so this module never imports the data
pipelines.
"""

import dataclasses
import functools
import json
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchored_jax.parallel.logical_sharding import (
    DEFAULT_RULES,
    Rules,
    batch_sharding,
    rules_from_config,
    tree_shardings,
    use_rules,
)
from anchored_jax.parallel.mesh import build_mesh, data_parallel_size
from anchored_jax.parallel.multihost import global_batch
from anchored_jax.training.checkpointing import (
    CheckpointDamagedError,
    CheckpointMismatchError,
    CheckpointSaveError,
    RunCheckpoints,
    first_line,
    write_run_config,
)
from anchored_jax.training.config_checks import ConfigError
from anchored_jax.training.sample_grid import write_grid_png
from anchored_jax.training.train_state import TrainState, guard_and_average

EVAL_LOG = "eval_metrics.jsonl"
# A config without a `mesh` section (the LEO configs) trains data-parallel on every device.
DEFAULT_MESH = dict(num_devices=-1, ici=dict(data=-1, fsdp=1, tensor=1, sequence=1))


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive non-finite steps: the run stops, its checkpoints untouched."""


class LogWriteError(OSError):
    """The run's logs (TensorBoard events, figures) could not be written, e.g. a full disk."""


# What `train` raises as one line for the launcher to print: nothing was lost.
RUN_ERRORS = (
    NonFiniteTrainingError,
    CheckpointMismatchError,
    CheckpointSaveError,
    CheckpointDamagedError,
    LogWriteError,
    ConfigError,  # a config that does not fit the devices it runs on
)


class _CheckedWriter:
    """The clu writer, writing synchronously, with any failure raised as one `LogWriteError`
    line. (clu's asynchronous writer reports a failed write as tracebacks from its thread and an
    `AsyncError` at the next call.)"""

    def __init__(self, workdir: str, *, just_logging: bool):
        self._workdir = workdir
        self.checkpoints: RunCheckpoints | None = None  # named in the error once there is one
        self._writer = metric_writers.create_default_writer(
            workdir, just_logging=just_logging, asynchronous=False
        )

    def __getattr__(self, name: str):
        method = getattr(self._writer, name)

        def checked(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except Exception as e:  # TensorFlow's and the OS's errors alike
                intact = ""
                if self.checkpoints is not None:
                    intact = f"; {self.checkpoints.intact_message()}"
                raise LogWriteError(
                    f"{self._workdir}: writing the logs failed ({first_line(e)}){intact}"
                ) from e

        return checked


@dataclasses.dataclass
class TrainData:
    """What the launcher reads for a run: the data that the loop itself never builds."""

    train_iter: Iterator  # grain iterator (get_state/set_state), checkpointed with the state
    eval_data: Any = None  # the task's held-out data: batches, videos or code windows
    frozen: Any = None  # fixed inputs of every step (the animator's VGG19), never checkpointed


class Task(Protocol):
    """What a model brings to the loop (see anchored_jax/training/tasks/)."""

    name: str
    config: ml_collections.ConfigDict
    ema_decay: float | None  # None: the task keeps no EMA
    batch_ranks: Mapping[str, int]  # the batch entries the step reads, with their ranks
    eval_every_steps: int | None  # None: evaluate only at the last step
    sample_every_steps: int | None  # None: no figure hook

    def init(self) -> TrainState: ...  # a fresh state; traced under jit, never run eagerly

    def step(self, state, batch, key, frozen) -> tuple[TrainState, dict]: ...  # pure update

    def train_key(self) -> jax.Array: ...  # the key each step folds its index into

    def describe(self, state) -> tuple[str, dict]: ...  # (log line, hparams)

    # (metrics, {tag: (path under the workdir, uint8 image)})
    def evaluate(self, state, eval_data, step, setup) -> tuple[dict, dict]: ...

    def sample(self, state, eval_data, step, setup) -> dict: ...  # {tag: (path, image)}


@dataclasses.dataclass(frozen=True)
class TaskSetup:
    """A task compiled for a mesh: state shardings, input shardings and the jitted step."""

    mesh: Mesh
    rules: Rules
    abstract_state: TrainState
    state_shardings: TrainState
    input_shardings: dict[str, NamedSharding]
    replicated: NamedSharding
    init_fn: Callable[[], TrainState]
    train_step: Callable  # (state, batch, key) -> (state, metrics); the old state is donated

    def init_state(self) -> TrainState:
        """A fresh state, created directly in its shardings (never whole on one device)."""
        return jax.jit(self.init_fn, out_shardings=self.state_shardings)()

    def restore_target(self) -> TrainState:
        """Shape, dtype and sharding of every leaf: what orbax restores (and reshards) onto."""
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self.abstract_state,
            self.state_shardings,
        )

    def to_device(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's slice of a batch -> global arrays sharded over the batch axes."""
        return global_batch({k: batch[k] for k in self.input_shardings}, self.input_shardings)


def build_setup(task: Task, mesh: Mesh | None = None, frozen: Any = None) -> TaskSetup:
    config = task.config
    # ------------------------------------------------------------------ mesh
    if mesh is None:
        mesh = build_mesh(config.get("mesh") or ml_collections.ConfigDict(DEFAULT_MESH))
    split = data_parallel_size(mesh)
    if config.training.batch_size % split:
        raise ConfigError(
            f"training.batch_size: {config.training.batch_size} does not split over the "
            f"{split} data-parallel devices of the mesh {dict(mesh.shape)} (set a multiple of "
            f"{split}, or mesh.num_devices)"
        )
    sharding = config.get("sharding")
    rules = rules_from_config(sharding.rules) if sharding else DEFAULT_RULES

    # ------------------------------------------------------------------ model and optimiser
    abstract_state = jax.eval_shape(task.init)

    # ------------------------------------------------------------------ shardings
    state_shardings = tree_shardings(abstract_state, rules, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    input_shardings = {
        name: batch_sharding(mesh, rules, ndim) for name, ndim in task.batch_ranks.items()
    }

    # ------------------------------------------------------------------ step
    def guarded_step(state, batch, key, frozen):
        new_state, metrics = task.step(state, batch, key, frozen)
        return guard_and_average(state, new_state, metrics, task.ema_decay)

    jitted = jax.jit(
        guarded_step,
        in_shardings=(state_shardings, input_shardings, replicated, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )
    return TaskSetup(
        mesh=mesh,
        rules=rules,
        abstract_state=abstract_state,
        state_shardings=state_shardings,
        input_shardings=input_shardings,
        replicated=replicated,
        init_fn=task.init,
        train_step=functools.partial(_call_with_frozen, jitted, frozen),
    )


def _call_with_frozen(jitted, frozen, state, batch, key):
    return jitted(state, batch, key, frozen)


# ---------------------------------------------------------------------- preemption
class SigtermFlag:
    """A single process's preemption notice: SIGTERM (what TPU VMs and SLURM send first).

    With `jax.distributed` initialised no Python handler is installed: JAX's preemption sync
    service owns SIGTERM there, and a Python handler would shadow it (one host would stop
    while the others wait in the next collective).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if not jax.distributed.is_initialized():
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # Not the main thread (a test runner's worker): no handler.
                self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint and stopping.")
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def preemption_reached(step: int, sigterm: SigtermFlag) -> bool:
    """The one place that decides to save and stop for a preemption after `step`.

    Multi-process: JAX's sync point, True at the same step on every host once any host got
    a notice. One process without a distributed client: the SIGTERM flag.
    """
    if jax.distributed.is_initialized():
        if multihost_utils.reached_preemption_sync_point(step):
            logging.warning("Preemption notice: saving step %d on every host and stopping.", step)
            return True
        return False
    return sigterm.requested


# ---------------------------------------------------------------------- the loop
def train(
    task: Task,
    workdir: str,
    data: TrainData,
    *,
    stop_at_step: int | None = None,
    mesh: Mesh | None = None,
) -> dict:
    """Trains `task` to `training.num_steps`, resuming from the workdir's latest checkpoint.

    `stop_at_step` ends this run early, with a checkpoint, as a job with a time limit would;
    running again continues exactly. Returns the last evaluation (`eval_step` says at which
    step it ran), the first one for a run that started at step 0 (`initial_*`), and the
    first and last logged train losses.
    """
    config = task.config
    num_steps = config.training.num_steps
    end_step = num_steps if stop_at_step is None else min(stop_at_step, num_steps)
    max_nonfinite = config.training.get("max_nonfinite_steps", 20)
    is_main = jax.process_index() == 0

    # ------------------------------------------------------------------ writers
    writer = _CheckedWriter(workdir, just_logging=not is_main)
    if is_main:
        write_run_config(workdir, config)

    # ------------------------------------------------------------------ mesh, shardings, step
    setup = build_setup(task, mesh, data.frozen)
    logging.info("Mesh %s over %d devices.", dict(setup.mesh.shape), setup.mesh.size)

    # ------------------------------------------------------------------ restore or initialise
    # The state is created (or restored) directly in its shardings.
    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    writer.checkpoints = checkpoints
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        _, state = checkpoints.restore_latest(setup.restore_target(), data.train_iter)
        if state is None:
            state = setup.init_state()
    start_step = int(state.step)
    line, hparams = task.describe(state)
    logging.info("%s; starting at step %d of %d.", line, start_step, num_steps)
    if start_step == 0:
        writer.write_hparams(hparams)

    # ------------------------------------------------------------------ eval and figures
    def run_eval(step: int) -> dict:
        metrics, images = task.evaluate(state, data.eval_data, step, setup)
        write_outputs(step, metrics, images)
        if is_main:
            with open(os.path.join(workdir, EVAL_LOG), "a") as f:
                f.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        return {**metrics, "eval_step": step}

    def write_outputs(step: int, metrics: dict, images: dict) -> None:
        numbers = (float, int, np.floating, np.integer)
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, numbers)}
        if scalars:
            writer.write_scalars(step, scalars)
        for tag, (relpath, image) in images.items():  # uint8 [H, W, 3] figures
            writer.write_images(step, {tag: image[None]})
            if is_main:
                write_grid_png(image, os.path.join(workdir, relpath))

    def eval_due(step: int) -> bool:
        every = task.eval_every_steps
        return step == num_steps or (every is not None and step % every == 0)

    def sample_due(step: int) -> bool:
        every = task.sample_every_steps
        return every is not None and (step % every == 0 or step == num_steps)

    # ------------------------------------------------------------------ loop
    train_key = task.train_key()
    log_every = config.logging.log_every_steps
    report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        first_eval = None
        if start_step == 0 and task.eval_every_steps is not None:
            first_eval = run_eval(0)
    last_eval = first_eval
    pending: list[dict[str, jax.Array]] = []
    logged_losses: list[float] = []
    step = start_step
    with SigtermFlag() as sigterm, jax.set_mesh(setup.mesh), use_rules(setup.rules):
        while step < end_step:
            batch = setup.to_device(next(data.train_iter))
            state, metrics = setup.train_step(state, batch, jax.random.fold_in(train_key, step))
            pending.append(metrics)
            step += 1
            report_progress(step)
            checkpoints.check_for_errors()  # a failed background save stops the run now
            streak = int(state.nonfinite_streak)
            if streak:
                logging.warning(
                    "step %d: non-finite loss, gradient or update, skipped (%d in a row, %d total)",
                    step, streak, int(state.nonfinite_total),
                )  # fmt: skip
            if streak >= max_nonfinite:
                writer.flush()
                checkpoints.wait_until_finished()
                raise NonFiniteTrainingError(
                    f"training stopped at step {step}: {streak} consecutive non-finite steps "
                    f"(training.max_nonfinite_steps={max_nonfinite}); the last "
                    f"checkpoint, step {checkpoints.latest_step()}, is intact"
                )
            if step % log_every == 0 or step == end_step:
                means = jax.tree.map(lambda *xs: float(jnp.mean(jnp.stack(xs))), *pending)
                writer.write_scalars(step, {f"train_{k}": v for k, v in means.items()})
                writer.write_scalars(step, {"nonfinite_total": int(state.nonfinite_total)})
                logged_losses.append(means["loss"])
                pending = []
            if eval_due(step):
                last_eval = run_eval(step)
            if sample_due(step):
                write_outputs(step, {}, task.sample(state, data.eval_data, step, setup))
            preempted = preemption_reached(step, sigterm)
            if step % config.checkpoint.every_steps == 0 or preempted or step == end_step:
                checkpoints.save(step, state, data.train_iter, config)
            if preempted:
                break

    # ------------------------------------------------------------------ close
    checkpoints.wait_until_finished()
    checkpoints.close()
    writer.flush()
    summary = {"step": step, **(last_eval or {})}
    if first_eval is not None:
        summary.update({f"initial_{k}": v for k, v in first_eval.items() if k != "eval_step"})
    if logged_losses:
        summary.update(first_logged_loss=logged_losses[0], final_loss=logged_losses[-1])
    return summary


def flat_hparams(config: ml_collections.ConfigDict) -> dict:
    """The config's scalar fields as `section.key` hparams."""
    flat = {}
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, int | float | str | bool):
                    flat[f"{section}.{key}"] = value
        elif isinstance(values, int | float | str | bool):
            flat[section] = values
    return flat
