"""LPIPS (Zhang et al. 2018) in Flax, with AlexNet or VGG16 features and importable weights.

The computation is that of the `lpips` package (v0.1, the one papers report): images in
[-1, 1] go through its scaling layer, then the backbone's five relu outputs (AlexNet relu1..5,
VGG16 relu1_2..relu5_3); each feature map is unit-normalised over channels, the two images'
maps are subtracted and squared, weighted per channel by a 1x1 conv without bias (`lin0..4`),
averaged over space and summed over the five layers.

Weights come in two files, as they are distributed:
- the backbone, a torchvision state dict (`alexnet()` or `vgg16()`): `features.<i>.weight`
  `[out, in, k, k]` and `.bias` `[out]`; other entries (the classifier) are ignored;
- the linear layers, the `lpips` package's `weights/v0.1/{alex,vgg}.pth`:
  `lin<i>.model.1.weight` `[1, C, 1, 1]`.
Each may be `.pth` (read with `torch.load(weights_only=True)`) or `.safetensors`; a file that
does not match the model raises one error naming every missing, extra or mis-shaped key.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.interop.weight_files import check_layout, load_weight_file

# lpips.pretrained_networks.ScalingLayer: [-1, 1] inputs to the ImageNet statistics.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # lpips.normalize_tensor
# Full float32 convolutions: a metric's numbers should not depend on the accelerator's
# default (TF32 or bf16 passes on GPU/TPU).
EXACT = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A torchvision `features` stack cut into the five stages whose last relu LPIPS reads.

    `stages[s]` lists the convs `(features index, out channels, kernel, stride, padding)`,
    each followed by a relu; a max pool `(pool_window, pool_stride)` precedes the stages
    marked in `pool_before`.
    """

    stages: tuple[tuple[tuple[int, int, int, int, int], ...], ...]
    pool_before: tuple[bool, ...]
    pool_window: int
    pool_stride: int
    min_side: int  # smallest image side for which every stage keeps at least one pixel

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(stage[-1][1] for stage in self.stages)


BACKBONES = {
    # torchvision alexnet().features: conv 0/3/6/8/10, max pools 2 and 5 (window 3, stride 2).
    "alex": Backbone(
        stages=(
            ((0, 64, 11, 4, 2),),
            ((3, 192, 5, 1, 2),),
            ((6, 384, 3, 1, 1),),
            ((8, 256, 3, 1, 1),),
            ((10, 256, 3, 1, 1),),
        ),
        pool_before=(False, True, True, False, False),
        pool_window=3,
        pool_stride=2,
        min_side=31,
    ),
    # torchvision vgg16().features: 13 convs 3x3, max pools 4/9/16/23 (window 2, stride 2).
    "vgg": Backbone(
        stages=(
            ((0, 64, 3, 1, 1), (2, 64, 3, 1, 1)),
            ((5, 128, 3, 1, 1), (7, 128, 3, 1, 1)),
            ((10, 256, 3, 1, 1), (12, 256, 3, 1, 1), (14, 256, 3, 1, 1)),
            ((17, 512, 3, 1, 1), (19, 512, 3, 1, 1), (21, 512, 3, 1, 1)),
            ((24, 512, 3, 1, 1), (26, 512, 3, 1, 1), (28, 512, 3, 1, 1)),
        ),
        pool_before=(False, True, True, True, True),
        pool_window=2,
        pool_stride=2,
        min_side=16,
    ),
}


def _backbone(net: str) -> Backbone:
    if net not in BACKBONES:
        raise ValueError(f"lpips net: expected one of {sorted(BACKBONES)}, got {net!r}")
    return BACKBONES[net]


class LpipsNetwork(nnx.Module):
    """`(x_NHWC, y_NHWC)` in [-1, 1] -> LPIPS distance per image pair, `[N]`."""

    def __init__(self, net: str, *, rngs: nnx.Rngs):
        self.backbone = _backbone(net)
        convs, c_in = {}, 3
        for stage in self.backbone.stages:
            for index, c_out, kernel, stride, padding in stage:
                convs[str(index)] = nnx.Conv(
                    c_in,
                    c_out,
                    (kernel, kernel),
                    strides=stride,
                    padding=padding,
                    precision=EXACT,
                    rngs=rngs,
                )
                c_in = c_out
        self.features = nnx.Dict(convs)
        self.lins = nnx.List(
            [
                nnx.Conv(c, 1, (1, 1), use_bias=False, precision=EXACT, rngs=rngs)
                for c in self.backbone.channels
            ]
        )

    def feature_maps(self, x_NHWC: jax.Array) -> list[jax.Array]:
        """The five relu outputs the distance compares."""
        spec = self.backbone
        h = (x_NHWC - jnp.asarray(LPIPS_SHIFT)) / jnp.asarray(LPIPS_SCALE)
        outputs = []
        for stage, pool in zip(spec.stages, spec.pool_before, strict=True):
            if pool:
                window, stride = (spec.pool_window,) * 2, (spec.pool_stride,) * 2
                h = nnx.max_pool(h, window, strides=stride)
            for index, *_ in stage:
                h = jax.nn.relu(self.features[str(index)](h))
            outputs.append(h)
        return outputs

    def __call__(self, x_NHWC: jax.Array, y_NHWC: jax.Array) -> jax.Array:
        n = x_NHWC.shape[0]
        # One backbone pass for both images.
        maps = self.feature_maps(jnp.concatenate([x_NHWC, y_NHWC], axis=0))
        total_N = jnp.zeros((n,), jnp.float32)
        for f_2NhwC, lin in zip(maps, self.lins, strict=True):
            norm = jnp.sqrt(jnp.sum(f_2NhwC * f_2NhwC, axis=-1, keepdims=True))
            unit = f_2NhwC / (norm + NORM_EPS)
            diff_NhwC = jnp.square(unit[:n] - unit[n:])
            total_N = total_N + lin(diff_NhwC).mean(axis=(1, 2, 3))
        return total_N


def _backbone_entries(model: LpipsNetwork) -> dict[str, tuple[nnx.Param, str]]:
    """torchvision key -> (our parameter, "conv" or "bias")."""
    entries = {}
    for stage in model.backbone.stages:
        for index, *_ in stage:
            conv = model.features[str(index)]
            entries[f"features.{index}.weight"] = (conv.kernel, "conv")
            entries[f"features.{index}.bias"] = (conv.bias, "bias")
    return entries


def _linear_entries(model: LpipsNetwork) -> dict[str, tuple[nnx.Param, str]]:
    return {f"lin{i}.model.1.weight": (lin.kernel, "conv") for i, lin in enumerate(model.lins)}


def _torch_shape(param: nnx.Param, layout: str) -> tuple[int, ...]:
    shape = tuple(param.shape)
    return (shape[3], shape[2], shape[0], shape[1]) if layout == "conv" else shape


def _fill(source: str, entries, tensors: dict[str, np.ndarray]) -> None:
    check_layout(
        source,
        {key: _torch_shape(param, layout) for key, (param, layout) in entries.items()},
        {key: tuple(value.shape) for key, value in tensors.items()},
    )
    for key, (param, layout) in entries.items():
        value = tensors[key]
        if layout == "conv":  # torch OIHW -> flax HWIO
            value = value.transpose(2, 3, 1, 0)
        param.set_value(jnp.asarray(value, jnp.float32))


def lpips_network(
    net: str,
    backbone: dict[str, np.ndarray],
    linear: dict[str, np.ndarray],
    *,
    backbone_source: str = "LPIPS backbone state dict",
    linear_source: str = "LPIPS linear state dict",
) -> LpipsNetwork:
    """The network filled from a torchvision backbone state dict and an lpips linear one.

    The `*_source` names (the files) head any layout error.
    """
    model = nnx.eval_shape(lambda: LpipsNetwork(net, rngs=nnx.Rngs(0)))
    features = {k: v for k, v in backbone.items() if k.startswith("features.")}
    _fill(backbone_source, _backbone_entries(model), features)
    _fill(linear_source, _linear_entries(model), linear)
    return model


class LpipsMetric:
    """A loaded LPIPS network behind one jitted call: `metric(x_NHWC, y_NHWC) -> [N]`."""

    def __init__(self, network: LpipsNetwork):
        self.network = network
        self.net_min_side = network.backbone.min_side
        graphdef, self._state = nnx.split(network)
        self._apply = jax.jit(lambda state, x, y: nnx.merge(graphdef, state)(x, y))

    def __call__(self, x_NHWC, y_NHWC) -> jax.Array:
        """Distances for image pairs in [-1, 1] (0 for identical images; lower is closer)."""
        x, y = jnp.asarray(x_NHWC, jnp.float32), jnp.asarray(y_NHWC, jnp.float32)
        if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"lpips: expected two RGB batches [N, H, W, 3] of one shape, got {x.shape} "
                f"and {y.shape}"
            )
        if min(x.shape[1:3]) < self.net_min_side:
            raise ValueError(
                f"lpips: expected images of at least {self.net_min_side} pixels a side for "
                f"this backbone, got {x.shape[1]}x{x.shape[2]}"
            )
        return self._apply(self._state, x, y)


def load_lpips(net: str, backbone_weights: str, linear_weights: str) -> LpipsMetric:
    """LPIPS-`net` ("alex" or "vgg") from a torchvision backbone file and an lpips linear file."""
    _backbone(net)
    network = lpips_network(
        net,
        load_weight_file(backbone_weights),
        load_weight_file(linear_weights),
        backbone_source=backbone_weights,
        linear_source=linear_weights,
    )
    return LpipsMetric(network)
