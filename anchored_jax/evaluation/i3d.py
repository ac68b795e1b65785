"""FVD's I3D: Kinetics-400 logits of an inflated Inception-v1, with weights from a file.

The network is I3D (Carreira and Zisserman, "Quo Vadis, Action Recognition?", 2017) as the
widely used PyTorch port piergiaj/pytorch-i3d builds it: Unit3D = conv3d + batch norm (eps
1e-3) + ReLU with TensorFlow SAME padding (the extra pixel at the end), SAME max pools that pad
with zeros, a 2x7x7 average pool and a 1x1x1 logits conv. Nothing is downloaded:
`load_i3d` reads a state dict such as that repository's `rgb_imagenet.pt`. Videos are in
[-1, 1] (the range the RGB model was trained on), frames resized inside to 224x224 with
bilinear, no-antialias interpolation; the output is the 400 logits averaged over time, the
features FVD compares.

`width` scales every channel count; 1.0 is the real network, smaller values exist so tests can
run the same code quickly.
"""

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from anchored_jax.evaluation.torch_layout_layers import (
    BatchNorm,
    Conv,
    frozen_apply,
    load_torch_state_dict,
    max_pool,
    resize_bilinear,
)

I3D_SIZE = 224
NUM_CLASSES = 400
BN_EPS = 1e-3  # pytorch-i3d's Unit3D
# Output channels of the six units of each Inception module: b0, b1a, b1b, b2a, b2b, b3b.
MIXED_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max pools (window, strides) that run before these modules.
POOL_BEFORE = {"Mixed_4b": ((3, 3, 3), (2, 2, 2)), "Mixed_5b": ((2, 2, 2), (2, 2, 2))}
LOGITS_POOL = (2, 7, 7)


def max_pool_same_zero_pad(x_NTHWC: jax.Array, window, strides) -> jax.Array:
    """pytorch-i3d's MaxPool3dSamePadding: TF SAME padding filled with zeros, then max."""
    pads = jax.lax.padtype_to_pads(x_NTHWC.shape[1:4], window, strides, "SAME")
    x = jnp.pad(x_NTHWC, ((0, 0), *pads, (0, 0)))
    return max_pool(x, window, strides, "VALID")


class Unit3D(nnx.Module):
    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), *, stride=1, logits=False):
        self.conv3d = Conv(c_in, c_out, kernel, stride=stride, padding="SAME", bias=logits)
        # The logits unit has a bias and neither batch norm nor activation.
        self.bn = None if logits else BatchNorm(c_out, eps=BN_EPS)

    def __call__(self, x_NTHWC: jax.Array) -> jax.Array:
        y = self.conv3d(x_NTHWC)
        return y if self.bn is None else jax.nn.relu(self.bn(y))


class InceptionModule(nnx.Module):
    def __init__(self, c_in: int, channels: tuple[int, ...]):
        self.b0 = Unit3D(c_in, channels[0])
        self.b1a = Unit3D(c_in, channels[1])
        self.b1b = Unit3D(channels[1], channels[2], (3, 3, 3))
        self.b2a = Unit3D(c_in, channels[3])
        self.b2b = Unit3D(channels[3], channels[4], (3, 3, 3))
        self.b3b = Unit3D(c_in, channels[5])
        self.out_channels = channels[0] + channels[2] + channels[4] + channels[5]

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = max_pool_same_zero_pad(x, (3, 3, 3), (1, 1, 1))
        parts = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)]
        return jnp.concatenate(parts, axis=-1)


class InceptionI3d(nnx.Module):
    """`video_NTHWC` in [-1, 1] (FVD: 224x224 frames) -> Kinetics logits [N, 400] (time mean)."""

    def __init__(self, *, width: float = 1.0, num_classes: int = NUM_CLASSES):
        def s(channels: int) -> int:
            return max(1, round(channels * width))

        self.Conv3d_1a_7x7 = Unit3D(3, s(64), (7, 7, 7), stride=2)
        self.Conv3d_2b_1x1 = Unit3D(s(64), s(64))
        self.Conv3d_2c_3x3 = Unit3D(s(64), s(192), (3, 3, 3))
        c_in = s(192)
        for name, channels in MIXED_CHANNELS.items():
            module = InceptionModule(c_in, tuple(s(c) for c in channels))
            setattr(self, name, module)
            c_in = module.out_channels
        self.logits = Unit3D(c_in, num_classes, logits=True)

    def stem(self, video_NTHWC: jax.Array) -> jax.Array:
        """Conv3d_1a_7x7 through MaxPool3d_3a_3x3, the input of Mixed_3b."""
        x = self.Conv3d_1a_7x7(video_NTHWC)
        x = max_pool_same_zero_pad(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        return max_pool_same_zero_pad(x, (1, 3, 3), (1, 2, 2))

    def __call__(self, video_NTHWC: jax.Array) -> jax.Array:
        if video_NTHWC.ndim != 5 or video_NTHWC.shape[-1] != 3:
            raise ValueError(f"i3d video: expected [N, T, H, W, 3], got {video_NTHWC.shape}")
        x = self.stem(video_NTHWC)
        for name in MIXED_CHANNELS:
            if name in POOL_BEFORE:
                x = max_pool_same_zero_pad(x, *POOL_BEFORE[name])
            x = getattr(self, name)(x)
        # The reference's 2x7x7 valid average pool; at 224x224 it leaves one spatial position.
        # Clipped to the feature map so short or small test clips still run.
        window = tuple(min(k, n) for k, n in zip(LOGITS_POOL, x.shape[1:4], strict=True))
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, *window, 1), (1,) * 5, "VALID")
        logits_NTHWK = self.logits(x / (window[0] * window[1] * window[2]))
        return jnp.mean(logits_NTHWK, axis=(1, 2, 3))


def load_i3d_weights(path: str, *, width: float = 1.0) -> InceptionI3d:
    """An `InceptionI3d` filled from a pytorch-i3d-layout state dict."""
    # Key layout: piergiaj/pytorch-i3d InceptionI3d (rgb_imagenet.pt / rgb_charades.pt names).
    model = InceptionI3d(width=width)
    load_torch_state_dict(model, path)
    return model


def load_i3d(path: str, *, width: float = 1.0, image_size: int = I3D_SIZE):
    """`video_NTHWC` in [-1, 1], any frame size -> FVD features [N, 400] (jitted).

    Frames are resized to `image_size` (FVD: 224) inside; FVD clips are usually 16 frames.
    """
    model = load_i3d_weights(path, width=width)

    def resize_frames(video_NTHWC: jax.Array) -> jax.Array:
        n = video_NTHWC.shape[0]
        frames = resize_bilinear(rearrange(video_NTHWC, "n t h w c -> (n t) h w c"), image_size)
        return rearrange(frames, "(n t) h w c -> n t h w c", n=n)

    return frozen_apply(model, resize_frames)
