"""Orbax checkpoints of a training run: train state, data-iterator state, config, fingerprint.

The four are separate items of one `CheckpointManager` step, so a run can be inspected or
exported without the data pipeline. Orbax writes each step into a temporary directory and
renames it into place when every item is complete, so an interrupted save never leaves a
half-valid checkpoint behind; `latest_step` only ever sees finished ones.

- The data-iterator state is one JSON item written once (by the primary process) and read by
  every process, so a checkpoint written by N processes resumes in M.
- The fingerprint holds, per floating array of the state, whether it is finite and the sum of
  its absolute values. `restore_latest` checks a step before using it (metadata present, every
  item readable, the arrays finite and matching their fingerprint) and otherwise falls back to
  the previous step, with one warning line naming what was wrong; if no step is usable it
  stops with one `CheckpointDamagedError` line rather than start over an existing run.
- A save that fails (a full disk) raises one `CheckpointSaveError` line naming the step and
  the newest intact one; orbax's own tracebacks of it go to the log at DEBUG level only.
"""

import json
import logging as py_logging
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays do not fit the model being restored; lists the differences."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the previous ones are intact."""


class CheckpointDamagedError(RuntimeError):
    """No checkpoint of an existing run can be used; the run stops instead of starting over."""


class _Damaged(Exception):
    """One step cannot be used; the message says why (one line)."""


# Relative tolerance of the restored arrays' absolute sums against the saved fingerprint:
# loose enough for a different reduction order on another mesh, far below any bit damage.
FINGERPRINT_RTOL = 1e-3


@jax.jit
def fingerprint(state) -> tuple[jax.Array, jax.Array]:
    """Per floating leaf: all finite (bool) and the sum of |x| (float32); one pass each."""
    leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return jnp.zeros((0,), bool), jnp.zeros((0,), jnp.float32)
    finite = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
    abs_sum = jnp.stack([jnp.sum(jnp.abs(x.astype(jnp.float32))) for x in leaves])
    return finite, abs_sum


def first_line(error: BaseException) -> str:
    """An exception as one short line, for an `error:` message."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class _OrbaxNoise(py_logging.Filter):
    """Orbax logs a failed background write as long tracebacks (hundreds of lines for a full
    disk), and asyncio logs the futures of its write tasks that failed ("Future exception was
    never retrieved"); the one CheckpointSaveError line says it all, so they go to DEBUG. The
    training process runs no asyncio of its own: asyncio's errors are orbax's."""

    def filter(self, record):
        noisy = "orbax" in record.pathname or record.name == "asyncio"
        if record.levelno >= py_logging.ERROR and noisy:
            record.levelno, record.levelname = py_logging.DEBUG, "DEBUG"
            return py_logging.getLogger().isEnabledFor(py_logging.DEBUG)
        return True


def _path_name(path) -> str:
    parts = []
    for key in path:
        part = getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))
        parts.append(str(part))
    if parts and parts[-1] == "value":  # NNX variables store their array under `value`.
        parts.pop()
    return ".".join(parts)


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    return {
        _path_name(path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(leaf, "shape")
    }


def describe_mismatch(saved: dict, wanted: dict, limit: int = 8) -> str:
    """One line: which arrays differ in shape, are missing, or are unexpected."""
    differ = [f"{k} {saved[k]} vs {wanted[k]}" for k in sorted(saved.keys() & wanted.keys())
              if saved[k] != wanted[k]]  # fmt: skip
    missing = sorted(wanted.keys() - saved.keys())
    extra = sorted(saved.keys() - wanted.keys())
    parts = []
    for label, items in (("shape differs (saved vs model)", differ), ("missing", missing),
                         ("unexpected", extra)):  # fmt: skip
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def _drop_closed_event_loop_noise(previous_hook):
    """After a failed background write, orbax's threads report `Event loop is closed` once per
    pending array (hundreds of tracebacks); the CheckpointSaveError line already says it."""

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous_hook(unraisable)

    hook.drops_event_loop_noise = True
    return hook


class RunCheckpoints:
    """Saves and restores one run's checkpoints under `workdir/checkpoints`."""

    def __init__(self, workdir: str, checkpoint: ml_collections.ConfigDict):
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=checkpoint.max_to_keep,
            enable_async_checkpointing=checkpoint.async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers=dict(
                state=ocp.StandardCheckpointHandler(),
                data_iter=ocp.JsonCheckpointHandler(),
                config=ocp.JsonCheckpointHandler(),
                fingerprint=ocp.JsonCheckpointHandler(),
            ),
        )
        self.max_to_keep = checkpoint.max_to_keep
        self._writing: int | None = None  # the step an asynchronous save is still writing
        if not getattr(sys.unraisablehook, "drops_event_loop_noise", False):
            sys.unraisablehook = _drop_closed_event_loop_noise(sys.unraisablehook)
        for handler in py_logging.getLogger().handlers + [logging.get_absl_handler()]:
            if not any(isinstance(f, _OrbaxNoise) for f in handler.filters):
                handler.addFilter(_OrbaxNoise())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def latest_complete_step(self) -> int | None:
        """The newest step on disk in full, after the background write ends (a failed one is
        not counted): what a restart would resume from, for an error message."""
        try:
            self.wait_until_finished()
        except CheckpointSaveError:
            pass
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        data_iter: Any | None,
        config: ml_collections.ConfigDict,
    ) -> bool:
        finite, abs_sum = jax.device_get(fingerprint(state))
        items = dict(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
            fingerprint=ocp.args.JsonSave(
                dict(finite=finite.tolist(), abs_sum=abs_sum.astype(float).tolist())
            ),
        )
        if data_iter is not None:
            items["data_iter"] = ocp.args.JsonSave(_iterator_state(data_iter))
        self.wait_until_finished()  # orbax would wait too; here a failure names its own step
        self._prune()
        self._writing = step
        try:
            return self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        except Exception as e:
            raise self._save_error(step, e) from e

    def _prune(self) -> None:
        """Keeps exactly `max_to_keep` finished steps once the last write is done (orbax
        deletes the oldest only after the next save, so one extra stays on disk)."""
        if not self.max_to_keep or jax.process_index() != 0:
            return
        steps = self.all_steps()
        for step in steps[: max(0, len(steps) - self.max_to_keep)]:
            shutil.rmtree(os.path.join(self.directory, str(step)), ignore_errors=True)
        self._manager.reload()

    def restore_latest(self, abstract_state: Any, data_iter: Any | None = None):
        """`(step, state)` of the newest usable checkpoint, the iterator set in place; `(None,
        None)` for a new run. A damaged step falls back to the one before, with one warning."""
        steps = self.all_steps()
        problems = []
        for step in reversed(steps):
            try:
                state = self._restore_checked(step, abstract_state, data_iter)
            except _Damaged as e:
                problems.append(f"step {step}: {e}")
                more = "; trying the previous one" if step != steps[0] else ""
                logging.warning("checkpoint %s/%d unusable (%s)%s", self.directory, step, e, more)
                continue
            logging.info("Resuming from %s at step %d.", self.directory, step)
            return step, state
        if steps:
            raise CheckpointDamagedError(
                f"{self.directory}: no usable checkpoint ({'; '.join(problems)}); "
                "not starting over an existing run: move the directory away to start afresh"
            )
        return None, None

    def _restore_checked(self, step: int, abstract_state: Any, data_iter: Any | None) -> Any:
        try:
            metadata = self._manager.item_metadata(step)
            saved = _shapes(metadata["state"]) if metadata.get("state") is not None else {}
        except Exception as e:
            raise _Damaged(f"state metadata unreadable: {first_line(e)}") from None
        if not saved:
            raise _Damaged("state metadata missing")
        mismatch = describe_mismatch(saved, _shapes(abstract_state))
        if mismatch:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory}/{step} does not match this config: {mismatch}"
            )
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    fingerprint=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:
            raise _Damaged(f"state unreadable: {first_line(e)}") from None
        state, saved_print = restored["state"], restored["fingerprint"]
        finite, abs_sum = jax.device_get(fingerprint(state))
        if not finite.all():
            raise _Damaged(f"{int((~finite).sum())} arrays of the state are not finite")
        try:
            want = np.asarray(saved_print["abs_sum"], np.float64)
            ok = want.shape == abs_sum.shape and np.allclose(
                abs_sum, want, rtol=FINGERPRINT_RTOL, atol=1e-6
            )
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _Damaged("the state's values differ from the fingerprint saved with them")
        if data_iter is not None:
            try:
                saved_iter = self._manager.restore(
                    step, args=ocp.args.Composite(data_iter=ocp.args.JsonRestore())
                )["data_iter"]
                _set_iterator_state(data_iter, saved_iter)
            except Exception as e:
                raise _Damaged(f"data-iterator state unreadable: {first_line(e)}") from None
        return state

    def restore(
        self,
        step: int,
        abstract_state: Any,
        data_iter: Any | None = None,
    ) -> Any:
        """Restores one step's state (onto `abstract_state`'s shardings) and, in place, the
        iterator, after the same checks as `restore_latest`; a damaged step raises one
        CheckpointDamagedError line. A checkpoint written for another model config fails
        first, with the differences listed."""
        try:
            return self._restore_checked(step, abstract_state, data_iter)
        except _Damaged as e:
            raise CheckpointDamagedError(f"checkpoint {self.directory}/{step}: {e}") from None

    def restore_config(self, step: int) -> dict:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        return restored["config"]

    def check_for_errors(self) -> None:
        """Without blocking: a background write that has already failed raises its one
        CheckpointSaveError line now (the loop asks after every step)."""
        if self._writing is None:
            return
        try:
            self._manager.check_for_errors()
        except Exception as e:
            step, self._writing = self._writing, None
            raise self._save_error(step, e) from e

    def wait_until_finished(self) -> None:
        """Blocks until the background write is done; a failed one raises CheckpointSaveError."""
        step, self._writing = self._writing, None
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(step, e) from e

    def intact_message(self) -> str:
        """ "the latest complete checkpoint is step N" (or that none is), for an error line."""
        latest = self.latest_complete_step()
        if latest is None:
            return "no checkpoint is complete yet"
        return f"the latest complete checkpoint is step {latest}"

    def _save_error(self, step: int | None, error: Exception) -> CheckpointSaveError:
        self._manager.reload()
        latest = self._manager.latest_step()
        intact = f"the latest complete checkpoint is step {latest}"
        if latest is None:
            intact = "no checkpoint is complete yet"
        return CheckpointSaveError(
            f"{self.directory}: writing step {step} failed ({first_line(error)}); {intact}"
        )

    def close(self) -> None:
        step, self._writing = self._writing, None
        try:
            self._manager.wait_until_finished()
            self._prune()
            self._manager.close()
        except Exception as e:
            raise self._save_error(step, e) from e


def _iterator_state(data_iter: Any) -> dict:
    """The iterator's state as JSON: a dict, or grain DataLoader's JSON bytes."""
    state = data_iter.get_state()
    if isinstance(state, bytes):
        return {"encoded": state.decode()}
    return {"state": state}


def _set_iterator_state(data_iter: Any, saved: dict) -> None:
    if "encoded" in saved:
        data_iter.set_state(saved["encoded"].encode())
    else:
        data_iter.set_state(saved["state"])


def write_run_config(workdir: str, config: ml_collections.ConfigDict) -> str:
    """Writes `<workdir>/config.json` atomically (a temporary file, then a rename), so a kill
    at any moment leaves either the old file or the new one, never a truncated one."""
    path = os.path.join(workdir, "config.json")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, path)
    return path


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) for restoring onto the layout of `tree`."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
