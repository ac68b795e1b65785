"""Orbax checkpoints of a training run: train state, data-iterator state and config.

The three are separate items of one `CheckpointManager` step, so a run can be inspected or
exported without the data pipeline. Orbax writes each step into a temporary directory and
renames it into place when every item is complete, so an interrupted save never leaves a
half-valid checkpoint behind; `latest_step` only ever sees finished ones. A save that fails
(a full disk) raises one `CheckpointSaveError` line naming the step and the newest intact one.
"""

import json
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays do not fit the model being restored; lists the differences."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the previous ones are intact."""


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
                data_iter=grain.checkpoint.CheckpointHandler(),
                config=ocp.JsonCheckpointHandler(),
            ),
        )
        self._writing: int | None = None  # the step an asynchronous save is still writing

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def reached_preemption(self, step: int) -> bool:
        """Whether this is the step every host stops at after a preemption notice (JAX's
        preemption sync service, started by `jax.distributed.initialize`; a single process
        without it relies on the SIGTERM flag alone)."""
        return self._manager.reached_preemption(step)

    def save(
        self,
        step: int,
        state: Any,
        data_iter: grain.DatasetIterator | None,
        config: ml_collections.ConfigDict,
    ) -> bool:
        items = dict(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        )
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
        self.wait_until_finished()  # orbax would wait too; here a failure names its own step
        self._writing = step
        try:
            return self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        except Exception as e:
            raise self._save_error(step, e) from e

    def restore(
        self,
        step: int,
        abstract_state: Any,
        data_iter: grain.DatasetIterator | None = None,
    ) -> Any:
        """Restores the state (onto `abstract_state`'s shardings) and, in place, the iterator.

        A checkpoint written for another model config fails first, with the differences listed.
        """
        saved = _shapes(self._manager.item_metadata(step)["state"])
        mismatch = describe_mismatch(saved, _shapes(abstract_state))
        if mismatch:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory}/{step} does not match this config: {mismatch}"
            )
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_config(self, step: int) -> dict:
        restored = self._manager.restore(
            step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
        )
        return restored["config"]

    def wait_until_finished(self) -> None:
        """Blocks until the background write is done; a failed one raises CheckpointSaveError."""
        step, self._writing = self._writing, None
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_error(step, e) from e

    def _save_error(self, step: int | None, error: Exception) -> CheckpointSaveError:
        latest = self._manager.latest_step()
        intact = f"the latest complete checkpoint is step {latest}"
        if latest is None:
            intact = "no checkpoint is complete yet"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return CheckpointSaveError(
            f"{self.directory}: writing step {step} failed ({reason}); {intact}"
        )

    def close(self) -> None:
        step, self._writing = self._writing, None
        try:
            self._manager.close()  # also waits for a write still in flight
        except Exception as e:
            raise self._save_error(step, e) from e


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
