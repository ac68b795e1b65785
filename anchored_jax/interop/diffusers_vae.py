"""Import (and export) of diffusers-format `AutoencoderKL` weights.

A diffusers VAE directory holds `config.json` and `diffusion_pytorch_model.safetensors`
(or `.bin`). Our `AutoencoderKL` uses diffusers' attribute names, so a parameter's NNX
path *is* its state-dict key up to three renames: `kernel` -> `weight` (transposed from
HWIO/[in, out] to torch's OIHW/[out, in]), GroupNorm `scale` -> `weight`, list indices as
path parts. Checkpoints written before diffusers renamed the attention layers
(`query`/`key`/`value`/`proj_attn`) are read too. Every key must be used and every
parameter filled; anything else is one `WeightLayoutError` that lists the differences.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.interop.weight_files import check_layout, load_weight_file
from anchored_jax.models.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# Pre-0.14 diffusers names of the mid-block attention layers -> the current ones.
LEGACY_ATTENTION_NAMES = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}


def vae_config_from_diffusers(raw: dict, source: str = "config.json") -> AutoencoderKLConfig:
    """Our config from a diffusers `AutoencoderKL` config.json (plain-block variants only)."""
    if raw.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise ValueError(f"{source}: _class_name is {raw['_class_name']!r}, not 'AutoencoderKL'")
    for field, allowed in (
        ("down_block_types", "DownEncoderBlock2D"),
        ("up_block_types", "UpDecoderBlock2D"),
    ):
        kinds = set(raw.get(field, [allowed]))
        if kinds != {allowed}:
            raise ValueError(f"{source}: {field} must all be {allowed!r}, got {sorted(kinds)}")
    if raw.get("act_fn", "silu") != "silu":
        raise ValueError(f"{source}: act_fn must be 'silu', got {raw['act_fn']!r}")
    fields = {f: raw[f] for f in AutoencoderKLConfig.__dataclass_fields__ if raw.get(f) is not None}
    try:
        return AutoencoderKLConfig(**fields)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def diffusers_config(config: AutoencoderKLConfig) -> dict:
    """The diffusers config.json of our config."""
    n = len(config.block_out_channels)
    return {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        **{k: getattr(config, k) for k in AutoencoderKLConfig.__dataclass_fields__},
        "block_out_channels": list(config.block_out_channels),
    }


def diffusers_key(path: tuple) -> str:
    """State-dict key of the parameter at NNX `path` (e.g. `encoder.conv_in.weight`)."""
    *module, leaf = (str(p) for p in path)
    return ".".join(module + ["weight" if leaf in ("kernel", "scale") else leaf])


def to_torch_layout(value: np.ndarray) -> np.ndarray:
    """Our HWIO conv / [in, out] linear kernel as torch's OIHW / [out, in]."""
    if value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    return value.T if value.ndim == 2 else value


def from_torch_layout(value: np.ndarray, our_shape: tuple) -> np.ndarray:
    if len(our_shape) == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if len(our_shape) == 2:
        # Some converted checkpoints store the attention projections as 1x1 convs.
        return (value[:, :, 0, 0] if value.ndim == 4 else value).T
    return value


def _modern_name(key: str) -> str:
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in LEGACY_ATTENTION_NAMES:
        parts[-2] = LEGACY_ATTENTION_NAMES[parts[-2]]
    return ".".join(parts)


def _torch_shape(shape: tuple) -> tuple:
    return tuple(to_torch_layout(np.empty(shape, np.bool_)).shape)


def load_vae_params(vae: AutoencoderKL, tensors: dict[str, np.ndarray], source: str) -> None:
    """Fills every parameter of `vae` from a diffusers state dict, in place."""
    tensors = {_modern_name(k): v for k, v in tensors.items()}
    params = nnx.to_flat_state(nnx.state(vae, nnx.Param))
    by_key = {diffusers_key(path): var for path, var in params}
    expected = {k: _torch_shape(var.shape) for k, var in by_key.items()}
    found = {}
    for k, v in tensors.items():
        # Accept [C, C, 1, 1] attention projections as the [C, C] they are.
        is_squeezable = k in expected and len(expected[k]) == 2 and v.shape[2:] == (1, 1)
        found[k] = tuple(v.shape[:2]) if is_squeezable else tuple(v.shape)
    check_layout(source, expected, found)
    for k, var in by_key.items():
        var.set_value(jnp.asarray(from_torch_layout(tensors[k], var.shape), var.dtype))


def _weights_path(directory: str) -> str:
    for name in WEIGHT_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{directory}: no {' or '.join(WEIGHT_NAMES)} in this directory")


def load_diffusers_vae(directory: str) -> AutoencoderKL:
    """An `AutoencoderKL` built from `directory/config.json` with the directory's weights."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path}: diffusers VAE config not found")
    with open(config_path) as f:
        config = vae_config_from_diffusers(json.load(f), config_path)
    weights = _weights_path(directory)
    vae = nnx.eval_shape(lambda: AutoencoderKL(config, rngs=nnx.Rngs(0)))
    load_vae_params(vae, load_weight_file(weights), weights)
    return vae


def load_run_vae(config, vae_dir: str = "") -> AutoencoderKL | None:
    """The autoencoder a run's frames go through: `vae_dir`, else the run's `data.vae`.

    None when neither names one (a pixel model, or a latent run with no decoder given).
    """
    vae_dir = vae_dir or config.data.get("vae", "")
    return load_diffusers_vae(vae_dir) if vae_dir else None
