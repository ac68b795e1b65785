"""`jax.export` serialisations of the sDiT forward and of a fixed-shape DDIM sampler.

An export directory is readable with jax and numpy alone (no anchored_jax, no flax):

    <dir>/function.jax_export   `jax.export.Exported.serialize()` bytes
    <dir>/params.npz            the parameters, `name -> array` (np.savez, no pickles)
    <dir>/manifest.json         kind, input names/shapes/dtypes, output shape, run config

Load and run it with:

    exported = jax.export.deserialize(bytearray(open("function.jax_export", "rb").read()))
    params = dict(np.load("params.npz"))
    out = exported.call(params, {name: array for each manifest input})

Parameters are an argument rather than constants baked into the module, so the
serialisation stays small whatever the model size (and under protobuf's 2 GiB limit).
Shapes are fixed at export time (batch, frames): a server exports each shape it serves.
"""

import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.interop.export_inference import config_json
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.sampling.denoise_loop import sample
from anchored_jax.sampling.sampler_settings import SamplerSettings

FUNCTION_FILE = "function.jax_export"
PARAMS_FILE = "params.npz"
MANIFEST_FILE = "manifest.json"


def _param_names(params: nnx.State) -> tuple[list[str], object]:
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in paths_leaves]
    return names, treedef


def param_arrays(params: nnx.State) -> dict[str, np.ndarray]:
    names, _ = _param_names(params)
    return dict(zip(names, (np.asarray(jax.device_get(x)) for x in jax.tree.leaves(params))))


def _rebuild(params: nnx.State):
    """`name -> array` dict back into the params pytree, inside the traced function."""
    names, treedef = _param_names(params)
    return lambda flat: jax.tree.unflatten(treedef, [flat[n] for n in names])


def forward_input_specs(model: SDiTConfig, batch: int, frames: int) -> dict:
    """Shapes and dtypes of the forward's inputs (every condition, used or not)."""
    S, C = model.image_size, model.in_channels
    identity = {
        "encoder": ((batch, S, S, C), np.float32),
        "embedding": ((batch, model.identity_embed_dim), np.float32),
        "class_label": ((batch,), np.int32),
    }[model.identity]
    return {
        "x_BKHWC": ((batch, frames, S, S, C), np.float32),
        "t_BK": ((batch, frames), np.int32),
        "times_BK": ((batch, frames), np.float32),
        "landmarks_BKLC": ((batch, frames, model.num_landmarks, model.landmark_dim), np.float32),
        "identity": identity,
        "drop_identity_B": ((batch,), np.bool_),
        "drop_landmarks_B": ((batch,), np.bool_),
    }


def sampler_input_specs(model: SDiTConfig, batch: int, frames: int) -> dict:
    specs = forward_input_specs(model, batch, frames)
    S, C = model.image_size, model.in_channels
    return {
        "noise_BKHWC": ((batch, frames, S, S, C), np.float32),
        "times_BK": specs["times_BK"],
        "landmarks_BKLC": specs["landmarks_BKLC"],
        "identity": specs["identity"],
        "known_x0_BKHWC": ((batch, frames, S, S, C), np.float32),
        "known_mask_BK": ((batch, frames), np.bool_),
    }


def make_forward_fn(graphdef: nnx.GraphDef, params: nnx.State):
    """`(params_by_name, inputs) -> out_BKHWC`: one model call, masks included."""
    rebuild = _rebuild(params)

    def forward(flat_params, inputs):
        model = nnx.merge(graphdef, rebuild(flat_params))
        return model(
            inputs["x_BKHWC"],
            inputs["t_BK"],
            inputs["times_BK"],
            inputs["landmarks_BKLC"],
            inputs["identity"],
            drop_identity_B=inputs["drop_identity_B"],
            drop_landmarks_B=inputs["drop_landmarks_B"],
        )

    return forward


def make_sampler_fn(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    config: ml_collections.ConfigDict,
    num_steps: int,
    clip_x0: bool | None = None,
):
    """`(params_by_name, inputs) -> x0_BKHWC`: deterministic DDIM (eta 0) from given noise.

    Frames in `known_mask_BK` (e.g. the reenactment source) are held clean at t=0; x0
    estimates are clipped to [-1, 1] only with `clip_x0` (pixels, not latents); None takes
    the run's `sampling.clip_x0`.
    """
    if clip_x0 is None:
        clip_x0 = SamplerSettings.from_config(config).clip_x0
    rebuild = _rebuild(params)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)

    def run_sampler(flat_params, inputs):
        model = nnx.merge(graphdef, rebuild(flat_params))

        def denoise(x_t, t_BK):
            out = model(x_t, t_BK, inputs["times_BK"], inputs["landmarks_BKLC"], inputs["identity"])
            return out.astype(jnp.float32)

        return sample(
            denoise,
            schedule,
            inputs["noise_BKHWC"],
            num_steps=num_steps,
            prediction=config.diffusion.prediction,
            sampler="ddim",
            clip_x0=clip_x0,
            known_x0=inputs["known_x0_BKHWC"],
            known_mask=inputs["known_mask_BK"],
        )

    return run_sampler


def export_function(
    fn,
    params: nnx.State,
    input_specs: dict,
    directory: str,
    *,
    kind: str,
    config: ml_collections.ConfigDict,
    platforms: Sequence[str] | None = None,
    extra: dict | None = None,
) -> jax.export.Exported:
    """Serialises `fn(params_by_name, inputs)` for `input_specs` and writes the directory."""
    arrays = param_arrays(params)
    param_specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in arrays.items()}
    inputs = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in input_specs.items()}
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(param_specs, inputs)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, FUNCTION_FILE), "wb") as f:
        f.write(exported.serialize())
    np.savez(os.path.join(directory, PARAMS_FILE), **arrays)
    manifest = {
        "kind": kind,
        "platforms": list(exported.platforms),
        "inputs": {
            k: {"shape": list(shape), "dtype": np.dtype(dtype).name}
            for k, (shape, dtype) in input_specs.items()
        },
        "output": {
            "shape": list(exported.out_avals[0].shape),
            "dtype": str(exported.out_avals[0].dtype),
        },
        **(extra or {}),
        "config": json.loads(config_json(config)),
    }
    with open(os.path.join(directory, MANIFEST_FILE), "w") as f:
        json.dump(manifest, f, indent=2)
    return exported


def export_forward(graphdef, params, config, directory, *, batch, frames, platforms=None):
    """The model forward at fixed (batch, frames)."""
    model = SDiTConfig(**config.model.to_dict())
    return export_function(
        make_forward_fn(graphdef, params),
        params,
        forward_input_specs(model, batch, frames),
        directory,
        kind="sdit_forward",
        config=config,
        platforms=platforms,
    )


def export_sampler(
    graphdef, params, config, directory, *, batch, frames, num_steps, clip_x0=None,
    platforms=None,
):  # fmt: skip
    """The full DDIM sampler (`num_steps` model calls in one scan) at fixed shapes.

    clip_x0: clip x0 estimates to [-1, 1]; None takes the run's `sampling.clip_x0`. The
      manifest records it, so a served sampler says how it was built.
    """
    model = SDiTConfig(**config.model.to_dict())
    if clip_x0 is None:
        clip_x0 = SamplerSettings.from_config(config).clip_x0
    return export_function(
        make_sampler_fn(graphdef, params, config, num_steps, bool(clip_x0)),
        params,
        sampler_input_specs(model, batch, frames),
        directory,
        kind="sdit_ddim_sampler",
        config=config,
        platforms=platforms,
        extra={
            "num_steps": num_steps,
            "prediction": config.diffusion.prediction,
            "clip_x0": bool(clip_x0),
        },
    )
