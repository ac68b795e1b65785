"""sDiT parameters as a flat safetensors file that any framework can read.

Key names are the NNX parameter paths joined with dots, with the scanned block stack split
into one entry per layer so the file reads like a per-layer state dict:

    patch_embed.proj.kernel            [p*p*C, D]   patch flattened as (p1, p2, c)
    t_embedder.mlp.fc1.kernel          [256, D]     DiT's timestep sinusoid [cos | sin] in
    blocks.{i}.attn.qkv_kernel         [D, 3, heads, head_dim]
    blocks.{i}.attn.out_kernel         [heads, head_dim, D]
    blocks.{i}.adaln.kernel            [D, 6D]      shift/scale/gate (attn), then (mlp)
    final_layer.linear.kernel          [D, p*p*C_out]

Every `kernel` is `[in, out]` (x @ kernel + bias). The file's metadata holds the run config
(`config`, JSON) and the format tag; `config.json` is also written next to the file.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from anchored_jax.interop.export_inference import config_json
from anchored_jax.interop.weight_files import check_layout
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig

FORMAT_TAG = "anchored-jax/sdit-params/v1"


def _path_name(path) -> str:
    return ".".join(str(p) for p in path)


def _entries(path: tuple, model_config: SDiTConfig) -> list[tuple[str, int | None]]:
    """File names of one parameter, with the layer each holds (None: the whole array)."""
    if model_config.scan_layers and path[0] == "blocks":
        return [(_path_name(("blocks", i) + tuple(path[1:])), i) for i in range(model_config.depth)]
    return [(_path_name(path), None)]


def flat_tensors(params: nnx.State, model_config: SDiTConfig) -> dict[str, np.ndarray]:
    """`name -> array` with the scanned blocks split per layer (see the module docstring)."""
    flat = {}
    for path, var in nnx.to_flat_state(params):
        value = np.asarray(jax.device_get(var[...]))
        for name, layer in _entries(path, model_config):
            flat[name] = value if layer is None else value[layer]
    return flat


def save_safetensors(
    path: str, config: ml_collections.ConfigDict, params: nnx.State
) -> dict[str, np.ndarray]:
    """Writes `path` (.safetensors) and `config.json` beside it; returns the flat tensors."""
    from safetensors.numpy import save_file

    model_config = SDiTConfig(**config.model.to_dict())
    tensors = {k: np.ascontiguousarray(v) for k, v in flat_tensors(params, model_config).items()}
    text = config_json(config)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    save_file(tensors, path, metadata={"format": FORMAT_TAG, "config": text})
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(text)
    return tensors


def load_safetensors(path: str) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State]:
    """`(config, graphdef, params)` from a file written by `save_safetensors`."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT_TAG:
        raise ValueError(
            f"{path}: metadata format is {metadata.get('format')!r}, expected {FORMAT_TAG!r}"
        )
    config = ml_collections.ConfigDict(json.loads(metadata["config"]))
    model_config = SDiTConfig(**config.model.to_dict())
    abstract_model = nnx.eval_shape(lambda: SDiT(model_config, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(abstract_model, nnx.Param)
    flat = nnx.to_flat_state(params)
    expected = {}
    for p, var in flat:
        for name, layer in _entries(p, model_config):
            expected[name] = var.shape if layer is None else var.shape[1:]
    check_layout(path, expected, {k: v.shape for k, v in tensors.items()})
    for p, var in flat:
        entries = _entries(p, model_config)
        if entries[0][1] is None:
            value = tensors[entries[0][0]]
        else:
            value = np.stack([tensors[name] for name, _ in entries])
        var.set_value(jnp.asarray(value, var.dtype))
    return config, graphdef, params
