"""Loads a trained sDiT for inference: the run config, the graph and the EMA parameters.

Two layouts are accepted by `load_sdit_for_inference(path)`:

- a training workdir: the latest checkpoint of `RunCheckpoints`. Only the `ema_params`
  subtree of its `state` item is read (an orbax partial restore onto the abstract parameters
  of the saved config, built with `nnx.eval_shape`), so the optimiser's state is never
  loaded. The config is the checkpoint's `config` item, else `config.json`;
- an exported inference checkpoint: `<dir>/config.json` (the full run config) and
  `<dir>/ema_params/`, an orbax `StandardCheckpointer` save of the EMA parameter state.

Any problem (not a checkpoint, a config that does not validate, parameter shapes that do not
match the config) raises `InferenceCheckpointError` with one line naming the path.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from anchored_jax.diffusion.objectives import check_prediction_kind
from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.training.checkpointing import CHECKPOINT_SUBDIR, RunCheckpoints
from anchored_jax.training.train_state import split_model
from anchored_jax.training.trainer import build_model

CONFIG_FILE = "config.json"
EMA_PARAMS_DIR = "ema_params"


class InferenceCheckpointError(ValueError):
    """A checkpoint path that cannot be loaded; the message is one line naming it."""


def _read_config_json(path: str) -> ml_collections.ConfigDict:
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, json.JSONDecodeError) as e:
        raise InferenceCheckpointError(f"{path}: expected the run config as JSON ({e})") from None


def _validated(config: ml_collections.ConfigDict, where: str) -> ml_collections.ConfigDict:
    """Checks what inference needs (model, diffusion, clip length) and nothing about training:
    a run's mesh or batch size says nothing about whether its weights can sample here."""
    if config.get("task", "sdit") != "sdit":
        raise InferenceCheckpointError(
            f"{where}: expected an sDiT checkpoint (task 'sdit'), got task {config.task!r}"
        )
    try:
        model_config = SDiTConfig(**config.model.to_dict())
        make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
        check_prediction_kind(config.diffusion.prediction)
        clip_frames = config.data.clip_frames
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise InferenceCheckpointError(f"{where}: its config does not validate: {e}") from None
    if not 2 <= clip_frames <= model_config.max_frames:
        raise InferenceCheckpointError(
            f"{where}: data.clip_frames must be in [2, model.max_frames], got {clip_frames}"
        )
    return config


def _on_one_device(tree):
    """Restore targets on the first local device: inference here is single-device."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)


def _abstract_params(config: ml_collections.ConfigDict) -> tuple[nnx.GraphDef, nnx.State]:
    abstract_model = nnx.eval_shape(lambda: build_model(config, config.seed))
    return split_model(abstract_model)


def _shape_mismatch(where: str, error: Exception) -> InferenceCheckpointError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return InferenceCheckpointError(
        f"{where}: the saved parameters do not match its config (another model size or "
        f"config?): {first_line[:300]}"
    )


def _restore_ema_only(state_dir: str, abstract_params: nnx.State) -> nnx.State:
    """Reads only `ema_params` out of a saved TrainState (a partial restore).

    Neither the parameters nor the optimiser state are read, so a checkpoint stays loadable
    when the optimiser's state layout changes, and inference never holds 3x the weights.
    On disk each parameter sits under its variable's `value` key, as nnx.State saves it.
    """
    target = {
        "ema_params": jax.tree.map(
            lambda x: {"value": x}, nnx.to_pure_dict(_on_one_device(abstract_params))
        )
    }
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as checkpointer:
        restored = checkpointer.restore(
            state_dir,
            args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True
            ),
        )
    pure = jax.tree.map(
        lambda d: d["value"],
        restored["ema_params"],
        is_leaf=lambda d: isinstance(d, dict) and "value" in d,
    )
    for got, want in zip(jax.tree.leaves(pure), jax.tree.leaves(abstract_params)):
        if got.shape != want.shape:
            raise ValueError(f"a parameter has shape {got.shape}, the config says {want.shape}")
    nnx.replace_by_pure_dict(abstract_params, pure)
    return abstract_params


def _load_workdir(workdir: str):
    checkpoints_dir = os.path.join(workdir, CHECKPOINT_SUBDIR)
    fallback_config = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(fallback_config):
        raise InferenceCheckpointError(f"{workdir}: a training workdir needs {CONFIG_FILE}")
    config = _read_config_json(fallback_config)
    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise InferenceCheckpointError(
                f"{checkpoints_dir}: no finished checkpoint yet (train first, or wait for one)"
            )
        try:
            config = ml_collections.ConfigDict(checkpoints.restore_config(step))
        except (FileNotFoundError, KeyError, ValueError):
            pass  # An older step without a config item: config.json describes the same run.
        config = _validated(config, workdir)
        graphdef, abstract_params = _abstract_params(config)
        state_dir = os.path.join(checkpoints.directory, str(step), "state")
        try:
            ema_params = _restore_ema_only(state_dir, abstract_params)
        except (ValueError, KeyError, TypeError) as e:
            raise _shape_mismatch(state_dir, e) from None
    finally:
        checkpoints.close()
    return config, graphdef, ema_params


def _load_export(directory: str):
    config = _validated(_read_config_json(os.path.join(directory, CONFIG_FILE)), directory)
    graphdef, abstract_params = _abstract_params(config)
    target = _on_one_device(abstract_params)
    ema_dir = os.path.join(directory, EMA_PARAMS_DIR)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(ema_dir, target)
    except (ValueError, KeyError, TypeError) as e:
        raise _shape_mismatch(ema_dir, e) from None
    return config, graphdef, params


def load_sdit_for_inference(
    path: str | os.PathLike,
) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State]:
    """Returns `(config, graphdef, ema_params)` from a workdir or an exported checkpoint."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise InferenceCheckpointError(f"--checkpoint {path}: no such file or directory")
    if os.path.isdir(os.path.join(path, EMA_PARAMS_DIR)):
        return _load_export(path)
    if os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR)):
        return _load_workdir(path)
    raise InferenceCheckpointError(
        f"--checkpoint {path}: expected a training workdir (with {CHECKPOINT_SUBDIR}/) or an "
        f"exported checkpoint (with {CONFIG_FILE} and {EMA_PARAMS_DIR}/)"
    )
