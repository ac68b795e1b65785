"""LIA checkpoints <-> our animator generator, and safe reading of PyTorch state dicts.

LIA's checkpoints (wyhsirius/LIA) are `.pt` files whose `gen` entry is the generator's state
dict. `read_state_dict` loads one without unpickling arbitrary objects (`torch.load` with
`weights_only=True`, torch being optional) or from a safetensors conversion.
`lia_generator_params` maps its keys onto `LeoGenerator`'s parameters: layouts change
(OIHW -> HWIO, [out, in] -> [in, out], [1, C, 1, 1] -> [C]); the blur-filter buffers are
constants here and are skipped. `lia_state_dict` is the inverse, for export.
"""

import argparse
import os
from collections.abc import Iterator, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.interop.weight_files import read_safetensors, read_torch_weights_only
from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_generator import LeoGenerator
from anchored_jax.models.leo_stylegan_layers import ConvLayer, EqualLinear, StyledConv, ToRGB

# name -> (torch array -> ours, ours -> torch array)
_LAYOUTS = {
    "same": (lambda a: a, lambda a: a),
    "conv": (lambda a: a.transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)),
    "modconv": (lambda a: a[0].transpose(2, 3, 1, 0), lambda a: a.transpose(3, 2, 0, 1)[None]),
    "linear": (lambda a: a.T, lambda a: a.T),
    "channel": (lambda a: a.reshape(-1), lambda a: a.reshape(1, -1, 1, 1)),
    "const": (lambda a: a[0].transpose(1, 2, 0), lambda a: a.transpose(2, 0, 1)[None]),
}
SKIPPED_BUFFER_SUFFIX = ".kernel"  # blur/upsample FIR filters: fixed constants, not weights


def read_state_dict(path: str, entry: str | None = None) -> dict[str, np.ndarray]:
    """float32 numpy arrays from a `.safetensors` file or a torch `.pt`/`.pth` state dict.

    `entry` picks a sub-dict of a torch checkpoint (LIA's generator is under "gen").
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        tensors = read_safetensors(path)
    elif path.endswith((".pt", ".pth", ".ckpt")):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ValueError(
                f"{path}: reading torch files needs torch (pip install torch), or convert "
                "the state dict to .safetensors"
            ) from None
        # LIA's trainer saves its argparse options beside the weights ({gen, dis, g_optim,
        # d_optim, args}); Namespace is the one class admitted (wyhsirius/LIA, train.py).
        loaded = read_torch_weights_only(path, allowed=(argparse.Namespace,))
        if entry is not None:
            if not isinstance(loaded, Mapping) or entry not in loaded:
                raise ValueError(f"{path}: expected a checkpoint with a {entry!r} entry")
            loaded = loaded[entry]
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a state dict (a mapping of tensors)")
        tensors = {k: v.detach().float().numpy() for k, v in loaded.items() if hasattr(v, "numpy")}
    else:
        raise ValueError(f"{path}: expected a .safetensors, .pt or .pth file")
    if entry is not None and path.endswith(".safetensors"):
        prefix = entry + "."
        if any(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def _conv_layer(key: str, path: tuple, layer: ConvLayer) -> Iterator[tuple]:
    i = 1 if layer.downsample else 0  # a downsampling ConvLayer starts with its blur
    yield f"{key}.{i}.weight", path + ("conv", "weight"), "conv"
    if layer.conv.bias is not None:
        yield f"{key}.{i}.bias", path + ("conv", "bias"), "same"
    if layer.act is not None:
        yield f"{key}.{i + 1}.bias", path + ("act", "bias"), "channel"


def _linear(key: str, path: tuple, layer: EqualLinear) -> Iterator[tuple]:
    yield f"{key}.weight", path + ("weight",), "linear"
    yield f"{key}.bias", path + ("bias",), "same"


def _modconv(key: str, path: tuple) -> Iterator[tuple]:
    yield f"{key}.weight", path + ("weight",), "modconv"
    yield f"{key}.modulation.weight", path + ("modulation", "weight"), "linear"
    yield f"{key}.modulation.bias", path + ("modulation", "bias"), "same"


def _styled_conv(key: str, path: tuple, layer: StyledConv) -> Iterator[tuple]:
    yield from _modconv(f"{key}.conv", path + ("conv",))
    yield f"{key}.noise.weight", path + ("noise_weight",), "same"
    yield f"{key}.activate.bias", path + ("act", "bias"), "channel"


def _to_rgb(key: str, path: tuple, layer: ToRGB) -> Iterator[tuple]:
    yield from _conv_layer(f"{key}.conv", path + ("conv",), layer.conv)
    yield f"{key}.bias", path + ("bias",), "channel"


def lia_key_map(gen: LeoGenerator) -> list[tuple[str, tuple, str]]:
    """`(LIA key, our parameter path, layout)` for every parameter of the generator."""
    entries = []
    app = gen.enc.net_app
    last = len(app.convs) - 1
    for i, conv in enumerate(app.convs):
        key, path = f"enc.net_app.convs.{i}", ("enc", "net_app", "convs", i)
        if i == 0:
            entries += _conv_layer(key, path, conv)
        elif i == last:
            entries.append((f"{key}.weight", path + ("weight",), "conv"))
        else:
            for part in ("conv1", "conv2", "skip"):
                entries += _conv_layer(f"{key}.{part}", path + (part,), getattr(conv, part))
    for i, layer in enumerate(gen.enc.fc):
        entries += _linear(f"enc.fc.{i}", ("enc", "fc", i), layer)
    dec = gen.dec
    entries.append(("dec.direction.weight", ("dec", "direction", "weight"), "same"))
    entries.append(("dec.input.input", ("dec", "input"), "const"))
    entries += _styled_conv("dec.conv1", ("dec", "conv1"), dec.conv1)
    entries += _to_rgb("dec.to_rgb1", ("dec", "to_rgb1"), dec.to_rgb1)
    for i, conv in enumerate(dec.convs):
        entries += _styled_conv(f"dec.convs.{i}", ("dec", "convs", i), conv)
    for i, rgb in enumerate(dec.to_rgbs):
        entries += _to_rgb(f"dec.to_rgbs.{i}", ("dec", "to_rgbs", i), rgb)
    for i in range(len(dec.to_flows)):
        key, path = f"dec.to_flows.{i}", ("dec", "to_flows", i)
        entries += _modconv(f"{key}.conv", path + ("conv",))
        entries.append((f"{key}.bias", path + ("bias",), "channel"))
    return entries


def lia_generator_params(config: AnimatorConfig, state_dict: Mapping[str, np.ndarray]):
    """Our generator's `nnx.State` filled from a LIA `gen` state dict (every key checked)."""
    gen = nnx.eval_shape(lambda: LeoGenerator(config, rngs=nnx.Rngs(0)))
    params = nnx.state(gen, nnx.Param)
    flat = dict(nnx.to_flat_state(params))
    entries = lia_key_map(gen)
    expected = {key for key, _, _ in entries}
    unexpected = sorted(
        k for k in state_dict if k not in expected and not k.endswith(SKIPPED_BUFFER_SUFFIX)
    )
    if unexpected:
        raise ValueError(
            f"LIA state dict: unexpected key {unexpected[0]!r} ({len(unexpected)} in all); "
            f"is it a generator for image_size={config.image_size}?"
        )
    for key, path, layout in entries:
        if key not in state_dict:
            raise ValueError(f"LIA state dict: missing {key!r}")
        value = _LAYOUTS[layout][0](np.asarray(state_dict[key], np.float32))
        target = flat[path]
        if value.shape != target.shape:
            raise ValueError(
                f"LIA state dict: {key!r} gives shape {value.shape}, expected {target.shape} "
                f"for image_size={config.image_size}"
            )
        target.set_value(jnp.asarray(value))
    if len(entries) != len(flat):
        raise AssertionError("the LIA key map does not cover every generator parameter")
    return nnx.from_flat_state(flat)


def lia_state_dict(config: AnimatorConfig, params) -> dict[str, np.ndarray]:
    """The LIA-format `gen` state dict of our generator parameters (buffers omitted)."""
    gen = nnx.eval_shape(lambda: LeoGenerator(config, rngs=nnx.Rngs(0)))
    flat = dict(nnx.to_flat_state(nnx.filter_state(params, nnx.Param)))
    return {
        key: np.ascontiguousarray(_LAYOUTS[layout][1](np.asarray(flat[path].get_value())))
        for key, path, layout in lia_key_map(gen)
    }
