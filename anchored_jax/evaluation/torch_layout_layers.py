"""Frozen inference layers that keep PyTorch's parameter names and layouts, and their loader.

The evaluation networks (FID's Inception-v3, FVD's I3D, the ArcFace identity embedder) are
never trained here; they are filled from published PyTorch state dicts. Every parameter sits
under the attribute path of the PyTorch key it comes from (`Mixed_5b.branch1x1.conv.weight`)
and in that key's array layout (convolution kernels stay OIHW / OIDHW), so loading is a
name-for-name copy checked by `check_layout`, and `torch_layout(model)` lists exactly the keys
and shapes a file must hold (also on an abstract model from `nnx.eval_shape`). Activations are
channels-last; the convolutions read the PyTorch kernel layout through `dimension_numbers`.
Batch norms run in inference mode from their running statistics.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.interop.weight_files import check_layout, load_weight_file

# Activation and kernel layouts for 2-D and 3-D convolutions: channels-last activations,
# PyTorch's [out, in, *kernel] weights.
_DIMENSION_NUMBERS = {
    2: ("NHWC", "OIHW", "NHWC"),
    3: ("NDHWC", "OIDHW", "NDHWC"),
}

# Metrics must not change with an accelerator's default TF32 / bf16 matmul passes.
FULL_PRECISION = jax.lax.Precision.HIGHEST
# Buffers a PyTorch batch norm saves that inference does not read.
IGNORED_SUFFIXES = (".num_batches_tracked",)


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


class Conv(nnx.Module):
    """N-d convolution, PyTorch weight layout [out, in, *kernel], channels-last activations.

    `padding` is PyTorch's symmetric per-dimension padding (an int or one int per spatial
    dimension) or "SAME" for TensorFlow's asymmetric same padding (the extra pixel goes at the
    end, as the I3D port computes it).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        bias: bool = False,
    ):
        kernel = tuple(kernel)
        n = len(kernel)
        self.stride = _tuple(stride, n)
        self.padding = (
            padding if isinstance(padding, str) else tuple((p, p) for p in _tuple(padding, n))
        )
        self.weight = nnx.Param(np.zeros((c_out, c_in, *kernel), np.float32))
        self.bias = nnx.Param(np.zeros((c_out,), np.float32)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.weight[...]
        y = jax.lax.conv_general_dilated(
            x,
            weight,
            window_strides=self.stride,
            padding=self.padding,
            dimension_numbers=_DIMENSION_NUMBERS[weight.ndim - 2],
            precision=FULL_PRECISION,
        )
        return y if self.bias is None else y + self.bias[...]


class BatchNorm(nnx.Module):
    """Inference-mode batch norm over the last axis, from PyTorch's running statistics."""

    def __init__(self, channels: int, *, eps: float):
        self.eps = eps
        self.weight = nnx.Param(np.ones((channels,), np.float32))
        self.bias = nnx.Param(np.zeros((channels,), np.float32))
        self.running_mean = nnx.BatchStat(np.zeros((channels,), np.float32))
        self.running_var = nnx.BatchStat(np.ones((channels,), np.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
        return (x - self.running_mean[...]) * scale + self.bias[...]


class PReLU(nnx.Module):
    """PyTorch's per-channel PReLU over the last axis."""

    def __init__(self, channels: int):
        self.weight = nnx.Param(np.full((channels,), 0.25, np.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.weight[...] * x)


class Linear(nnx.Module):
    """PyTorch's Linear: weight [out, in], bias [out]."""

    def __init__(self, c_in: int, c_out: int):
        self.weight = nnx.Param(np.zeros((c_out, c_in), np.float32))
        self.bias = nnx.Param(np.zeros((c_out,), np.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.matmul(x, self.weight[...].T, precision=FULL_PRECISION) + self.bias[...]


def max_pool(x: jax.Array, window: Sequence[int], strides: Sequence[int], padding) -> jax.Array:
    """Max pool over the spatial axes of a channels-last array; padding as in `jax.lax`."""
    dims = (1, *window, 1)
    steps = (1, *strides, 1)
    if not isinstance(padding, str):
        padding = ((0, 0), *padding, (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, steps, padding)


def avg_pool_exclude_padding(x: jax.Array, window: Sequence[int], pad: int) -> jax.Array:
    """Stride-1 average pool that averages only real pixels (PyTorch `count_include_pad=False`)."""
    dims = (1, *window, 1)
    padding = ((0, 0), *[(pad, pad)] * len(window), (0, 0))
    steps = (1,) * x.ndim
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, steps, padding)
    ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, steps, padding)
    return total / count


def resize_bilinear(images_NHWC: jax.Array, size: int) -> jax.Array:
    """Bilinear resize to size x size, half-pixel centres and no antialiasing.

    This is PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`, the resize
    pytorch-fid applies before its Inception.
    """
    n, h, w, c = images_NHWC.shape
    if (h, w) == (size, size):
        return images_NHWC
    return jax.image.resize(images_NHWC, (n, size, size, c), "bilinear", antialias=False)


def torch_layout(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """`PyTorch key -> shape` of every array in `model` (works on an `nnx.eval_shape` model)."""
    return {
        ".".join(str(part) for part in path): tuple(variable.shape)
        for path, variable in nnx.to_flat_state(nnx.state(model))
    }


def load_torch_state_dict(
    model: nnx.Module, path: str, *, optional_keys: frozenset[str] = frozenset()
) -> None:
    """Fills `model` in place from a `.pth`/`.pt`/`.safetensors` state dict with its key layout.

    Any missing key, unexpected key or shape that differs raises one `WeightLayoutError` line
    naming the file. `optional_keys` may be in the file and are not read (a classifier head the
    features do not use); batch norms' `num_batches_tracked` counters are not read either.
    """
    tensors = load_weight_file(path, prefer_key="state_dict")
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    ignored = frozenset(k for k in found if k.endswith(IGNORED_SUFFIXES)) | optional_keys
    check_layout(path, torch_layout(model), found, ignored)
    for key_path, variable in nnx.to_flat_state(nnx.state(model)):
        variable.set_value(jnp.asarray(tensors[".".join(str(part) for part in key_path)]))


def frozen_apply(model: nnx.Module, preprocess):
    """A jitted `inputs -> model(preprocess(inputs))` over the model's current weights."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def apply(state, inputs):
        return nnx.merge(graphdef, state)(preprocess(inputs))

    return lambda inputs: apply(state, jnp.asarray(inputs, jnp.float32))
