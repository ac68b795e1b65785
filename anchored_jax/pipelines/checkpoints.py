"""The one loader of trained models for inference: sDiT, LEO animator and LMDM runs.

`load_model(path, task)` accepts two layouts:

- a training workdir: the latest finished checkpoint of `RunCheckpoints`. Only the subtree of
  the saved train state that inference uses is read (an orbax partial restore onto abstract
  parameters built with `nnx.eval_shape`): the EMA parameters of the sDiT and the LMDM, the
  generator of the animator. Optimiser states and the discriminator are never loaded, so a
  checkpoint stays loadable when their layout changes and inference never holds 3x the
  weights. The config is the checkpoint's `config` item, else the workdir's `config.json`;
- an exported inference checkpoint: `<dir>/config.json` (the full run config) and
  `<dir>/ema_params/`, an orbax `StandardCheckpointer` save of the parameter state (what
  `launch.export` and `launch.import_weights` write).

Any problem (not a checkpoint, another task, a config that does not validate, parameter shapes
that do not match the config) raises `CheckpointLoadError`: one line naming the path and, via
`what`, the flag or config field it came from.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from anchored_jax.diffusion.objectives import check_prediction_kind
from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_generator import LeoGenerator
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.training.checkpointing import CHECKPOINT_SUBDIR, RunCheckpoints

CONFIG_FILE = "config.json"
EMA_PARAMS_DIR = "ema_params"
TASKS = ("sdit", "animator", "lmdm")
# The subtree of each task's saved train state that inference reads, newest layout first.
# (The animator's train state holds its two networks as params = {"gen", "disc"}; animator
# runs saved before the one training loop hold the generator as `gen_params`.)
INFERENCE_PARAMS = {
    "sdit": (("ema_params",),),
    "animator": (("params", "gen"), ("gen_params",)),
    "lmdm": (("ema_params",),),
}


class CheckpointLoadError(ValueError):
    """A checkpoint path that cannot be loaded; the message is one line naming it."""


class LoadedModel(NamedTuple):
    """A run's config, the model's static graph and its inference parameters."""

    config: ml_collections.ConfigDict
    graphdef: nnx.GraphDef
    params: nnx.State


def _build(task: str, config: ml_collections.ConfigDict) -> nnx.Module:
    """The task's inference model (for the animator: the generator alone)."""
    if task == "sdit":
        return SDiT(SDiTConfig(**config.model.to_dict()), rngs=nnx.Rngs(0))
    if task == "animator":
        return LeoGenerator(AnimatorConfig(**config.model.to_dict()), rngs=nnx.Rngs(0))
    return LatentMotionDenoiser(LmdmConfig(**config.model.to_dict()), rngs=nnx.Rngs(0))


def _read_config_json(path: str) -> ml_collections.ConfigDict:
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointLoadError(f"{path}: expected the run config as JSON ({e})") from None


def _validated(config: ml_collections.ConfigDict, task: str, where: str):
    """Checks what inference needs (the model, and for the sDiT its diffusion and clip length)
    and nothing about training: a run's mesh or batch size says nothing about whether its
    weights can sample here."""
    got = config.get("task", "sdit")
    if got != task:
        raise CheckpointLoadError(f"{where}: expected a {task} run, got task {got!r}")
    try:
        _abstract(task, config)
        if task == "sdit":
            make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
            check_prediction_kind(config.diffusion.prediction)
            clip_frames = config.data.clip_frames
            if not 2 <= clip_frames <= config.model.max_frames:
                raise ValueError(
                    f"data.clip_frames must be in [2, model.max_frames], got {clip_frames}"
                )
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CheckpointLoadError(f"{where}: its config does not validate: {e}") from None
    return config


def _abstract(task: str, config) -> tuple[nnx.GraphDef, nnx.State]:
    """The model's graph and shape-only parameters, on the first local device (inference
    here is single-device; a sampler mesh replicates them itself)."""
    graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: _build(task, config)), nnx.Param, ...)
    del rest
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), params)
    return graphdef, params


def _shape_mismatch(where: str, error: Exception) -> CheckpointLoadError:
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    return CheckpointLoadError(
        f"{where}: the saved parameters do not match its config (another model size or "
        f"config?): {first_line[:300]}"
    )


class _MissingSubtree(KeyError):
    def __init__(self, path: tuple[str, ...], first: str, whole: bool):
        self.path, self.whole = path, whole
        name = ".".join(path)
        super().__init__(
            f"it holds no {name}" if whole else f"its {name} lacks the parameter {first}"
        )

    def __str__(self) -> str:
        return self.args[0]


def _restore_saved_params(state_dir: str, paths, abstract_params: nnx.State) -> nnx.State:
    """The inference parameters from the first of `paths` the saved state holds."""
    for path in paths:
        try:
            return _restore_subtree(state_dir, path, abstract_params)
        except _MissingSubtree as e:
            if not e.whole or path == paths[-1]:
                raise


def _restore_subtree(
    state_dir: str, path: tuple[str, ...], abstract_params: nnx.State
) -> nnx.State:
    """Reads only the subtree at `path` (e.g. `("ema_params",)`) out of a saved train state:
    a partial restore.

    On disk each parameter sits under its variable's `value` key, as nnx.State saves it.
    """
    wanted = nnx.to_pure_dict(abstract_params)
    target = jax.tree.map(lambda x: {"value": x}, wanted)
    for name in reversed(path):
        target = {name: target}
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as checkpointer:
        restored = checkpointer.restore(
            state_dir,
            args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True
            ),
        )
    for name in path:
        restored = restored[name]
    # partial_restore hands back the target's own placeholder for every key the checkpoint
    # lacks; a subtree that is partly there is a damaged or foreign checkpoint.
    missing = [
        jax.tree_util.keystr(key)
        for key, leaf in jax.tree_util.tree_leaves_with_path(restored)
        if isinstance(leaf, jax.ShapeDtypeStruct)
    ]
    if missing:
        total = len(jax.tree.leaves(restored))
        raise _MissingSubtree(path, missing[0], len(missing) == total)
    # Each wrapped leaf holds one array, so the leaves come back in the model's order (an
    # unwrap by key would mistake a layer named `value`, e.g. an attention projection).
    pure = jax.tree.unflatten(jax.tree.structure(wanted), jax.tree.leaves(restored))

    def check(key_path, got, want):
        if got.shape != want.shape:
            name = ".".join(str(getattr(k, "key", k)) for k in key_path)
            raise ValueError(f"{name} has shape {got.shape}, the config says {want.shape}")

    jax.tree_util.tree_map_with_path(check, pure, wanted)
    nnx.replace_by_pure_dict(abstract_params, pure)
    return abstract_params


def _load_workdir(workdir: str, task: str, where: str) -> LoadedModel:
    options = ml_collections.ConfigDict(dict(max_to_keep=1, async_save=False))
    checkpoints = RunCheckpoints(workdir, options)
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise CheckpointLoadError(
                f"{where}: no finished checkpoint yet (expected a {task} training run; train "
                "first, or wait for one)"
            )
        try:
            config = ml_collections.ConfigDict(checkpoints.restore_config(step))
        except (FileNotFoundError, KeyError, ValueError):
            # An older step without a config item: config.json describes the same run.
            fallback = os.path.join(workdir, CONFIG_FILE)
            if not os.path.isfile(fallback):
                raise CheckpointLoadError(f"{where}: its checkpoint has no config") from None
            config = _read_config_json(fallback)
        config = _validated(config, task, where)
        graphdef, abstract_params = _abstract(task, config)
        state_dir = os.path.join(checkpoints.directory, str(step), "state")
        try:
            params = _restore_saved_params(state_dir, INFERENCE_PARAMS[task], abstract_params)
        except (ValueError, KeyError, TypeError) as e:
            raise _shape_mismatch(state_dir, e) from None
    finally:
        checkpoints.close()
    return LoadedModel(config, graphdef, params)


def _load_export(directory: str, task: str, where: str) -> LoadedModel:
    config = _validated(_read_config_json(os.path.join(directory, CONFIG_FILE)), task, where)
    graphdef, abstract_params = _abstract(task, config)
    ema_dir = os.path.join(directory, EMA_PARAMS_DIR)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(ema_dir, abstract_params)
    except (ValueError, KeyError, TypeError) as e:
        raise _shape_mismatch(ema_dir, e) from None
    return LoadedModel(config, graphdef, params)


def load_model(
    path: str | os.PathLike, task: str = "sdit", what: str = "--checkpoint"
) -> LoadedModel:
    """`(config, graphdef, params)` of a `task` run from a workdir or an exported checkpoint.

    what: the flag or config field the path came from, named in every error.
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")
    path = os.path.abspath(os.fspath(path))
    where = f"{what} {path}"
    if not os.path.exists(path):
        raise CheckpointLoadError(f"{where}: no such file or directory")
    if os.path.isdir(os.path.join(path, EMA_PARAMS_DIR)):
        return _load_export(path, task, where)
    if os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR)):
        return _load_workdir(path, task, where)
    raise CheckpointLoadError(
        f"{where}: expected a training workdir (with {CHECKPOINT_SUBDIR}/) or an exported "
        f"checkpoint (with {CONFIG_FILE} and {EMA_PARAMS_DIR}/) of a {task} run"
    )


def load_sdit(path: str | os.PathLike, what: str = "--checkpoint") -> LoadedModel:
    """The sDiT of a training workdir or an exported inference checkpoint."""
    return load_model(path, "sdit", what)


def animator_motion_encoder(animator_workdir: str, what: str = "data.animator_workdir"):
    """`(frames_BHWC -> alpha_BM, encoder parameters)`: the motion encoder of a trained (or
    imported) animator; its parameters name it (they key the LMDM's cached codes).

    The LMDM trains on the codes it gives (`data.code_source = "animator"`).
    """
    if not animator_workdir:
        raise CheckpointLoadError(f"{what}: code_source=animator needs an animator run")
    if not os.path.isdir(animator_workdir):
        raise CheckpointLoadError(
            f"{what}: no animator run at {animator_workdir} (train one with configs/animator.py, "
            "or set data.code_source=landmarks for stand-in codes)"
        )
    _, graphdef, params = load_model(animator_workdir, "animator", what)
    encoder = nnx.merge(graphdef, params).enc
    return jax.jit(lambda x_BHWC: encoder(x_BHWC)[2]), nnx.state(encoder, nnx.Param)
