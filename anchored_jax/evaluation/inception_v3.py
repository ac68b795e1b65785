"""FID's Inception-v3: the 2048-d pool3 features FID compares, with weights from a file.

The network is pytorch-fid's `fid_inception_v3` (the TensorFlow 2015-12-05 Inception that FID
was defined with, ported to torchvision's `Inception3`): BasicConv2d = conv (no bias) + batch
norm (eps 1e-3) + ReLU; Mixed_5b-5d, 6b-6e and 7b average-pool their pool branch without
counting padding, and Mixed_7c max-pools it (pytorch-fid's FIDInceptionA/C/E_1/E_2). Nothing
is downloaded: `load_inception` reads a state dict such as pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth`. Inputs are images in [-1, 1], resized inside to
299x299 with bilinear, no-antialias interpolation as pytorch-fid does.

`width` scales every channel count; 1.0 is the real network, smaller values exist so tests can
run the same code quickly.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.evaluation.torch_layout_layers import (
    BatchNorm,
    Conv,
    avg_pool_exclude_padding,
    frozen_apply,
    load_torch_state_dict,
    max_pool,
    resize_bilinear,
)

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3  # torchvision's BasicConv2d
# The 1008-way classifier in pytorch-fid's file; pool3 features do not use it.
CLASSIFIER_KEYS = frozenset({"fc.weight", "fc.bias"})
MIXED_BLOCKS = (
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)


class BasicConv2d(nnx.Module):
    def __init__(self, c_in: int, c_out: int, kernel, *, stride: int = 1, padding=0):
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.conv = Conv(c_in, c_out, kernel, stride=stride, padding=padding)
        self.bn = BatchNorm(c_out, eps=BN_EPS)

    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x_NHWC)))


def _pool_branch(x_NHWC: jax.Array, kind: str) -> jax.Array:
    if kind == "max":  # Mixed_7c in the FID network
        return max_pool(x_NHWC, (3, 3), (1, 1), ((1, 1), (1, 1)))
    return avg_pool_exclude_padding(x_NHWC, (3, 3), 1)


class InceptionA(nnx.Module):
    def __init__(self, c_in: int, pool_features: int, s):
        self.branch1x1 = BasicConv2d(c_in, s(64), 1)
        self.branch5x5_1 = BasicConv2d(c_in, s(48), 1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, s(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)
        self.out_channels = 2 * s(64) + s(96) + pool_features

    def __call__(self, x: jax.Array) -> jax.Array:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(_pool_branch(x, "avg"))
        return jnp.concatenate([self.branch1x1(x), b5, b3, pool], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, c_in: int, s):
        self.branch3x3 = BasicConv2d(c_in, s(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, s(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), 3, stride=2)
        self.out_channels = s(384) + s(96) + c_in

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = max_pool(x, (3, 3), (2, 2), "VALID")
        return jnp.concatenate([self.branch3x3(x), b3, pool], axis=-1)


class InceptionC(nnx.Module):
    def __init__(self, c_in: int, c7: int, s):
        self.branch1x1 = BasicConv2d(c_in, s(192), 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, s(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, s(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, s(192), 1)
        self.out_channels = 4 * s(192)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = layer(d)
        d = self.branch7x7dbl_5(d)
        pool = self.branch_pool(_pool_branch(x, "avg"))
        return jnp.concatenate([self.branch1x1(x), b7, d, pool], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, c_in: int, s):
        self.branch3x3_1 = BasicConv2d(c_in, s(192), 1)
        self.branch3x3_2 = BasicConv2d(s(192), s(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, s(192), 1)
        self.branch7x7x3_2 = BasicConv2d(s(192), s(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(s(192), s(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(s(192), s(192), 3, stride=2)
        self.out_channels = s(320) + s(192) + c_in

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        pool = max_pool(x, (3, 3), (2, 2), "VALID")
        return jnp.concatenate([b3, b7, pool], axis=-1)


class InceptionE(nnx.Module):
    def __init__(self, c_in: int, pool_kind: str, s):
        self.pool_kind = pool_kind
        self.branch1x1 = BasicConv2d(c_in, s(320), 1)
        self.branch3x3_1 = BasicConv2d(c_in, s(384), 1)
        self.branch3x3_2a = BasicConv2d(s(384), s(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(s(384), s(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, s(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(448), s(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(s(384), s(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(s(384), s(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, s(192), 1)
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = self.branch_pool(_pool_branch(x, self.pool_kind))
        parts = [self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3)]
        parts += [self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), pool]
        return jnp.concatenate(parts, axis=-1)


class InceptionV3Features(nnx.Module):
    """`images_NHWC` in [-1, 1] (at least 75x75; FID uses 299x299) -> pool3 features [N, 2048]."""

    def __init__(self, *, width: float = 1.0):
        def s(channels: int) -> int:
            return max(1, round(channels * width))

        self.feature_dim = s(320) + 4 * s(384) + s(192)
        self.Conv2d_1a_3x3 = BasicConv2d(3, s(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(s(32), s(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(s(32), s(64), 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(s(64), s(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(s(80), s(192), 3)
        self.Mixed_5b = InceptionA(s(192), s(32), s)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, s(64), s)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, s(64), s)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, s)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, s(128), s)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, s(160), s)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, s(160), s)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, s(192), s)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, s)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, "avg", s)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, "max", s)

    def stem(self, images_NHWC: jax.Array) -> jax.Array:
        """Conv2d_1a_3x3 through the second max pool (pytorch-fid's blocks 0 and 1)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(images_NHWC)))
        x = max_pool(x, (3, 3), (2, 2), "VALID")
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        return max_pool(x, (3, 3), (2, 2), "VALID")

    def __call__(self, images_NHWC: jax.Array) -> jax.Array:
        if images_NHWC.ndim != 4 or images_NHWC.shape[-1] != 3:
            raise ValueError(f"inception images: expected [N, H, W, 3], got {images_NHWC.shape}")
        x = self.stem(images_NHWC)
        for name in MIXED_BLOCKS:
            x = getattr(self, name)(x)
        return jnp.mean(x, axis=(1, 2))


def load_inception_weights(path: str, *, width: float = 1.0) -> InceptionV3Features:
    """An `InceptionV3Features` filled from a pytorch-fid / torchvision-layout state dict."""
    # Key layout: torchvision Inception3 as patched by mseitzer/pytorch-fid (fid_inception_v3).
    model = InceptionV3Features(width=width)
    load_torch_state_dict(model, path, optional_keys=CLASSIFIER_KEYS)
    return model


def load_inception(path: str, *, width: float = 1.0, image_size: int = INCEPTION_SIZE):
    """`images_NHWC` in [-1, 1], any size -> FID pool3 features [N, 2048] (jitted).

    Images are resized to `image_size` (FID: 299) inside; pass batches small enough for memory.
    """
    model = load_inception_weights(path, width=width)
    return frozen_apply(model, lambda images: resize_bilinear(images, image_size))
