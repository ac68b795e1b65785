"""StyleGAN2 building blocks shared by LEO's animator encoder, generator and discriminator.

Channels-last (NHWC) throughout. Equalised learning rate: weights are drawn N(0, 1) and scaled
by 1/sqrt(fan_in) at run time, so Adam sees every layer at the same scale (StyleGAN2). The
parameter shapes and their grouping follow LIA's public code (wyhsirius/LIA,
networks/encoder.py and styledecoder.py), so its checkpoints map one to one onto these layers
(anchored_jax/interop/lia_import.py); kernels are stored HWIO, linear weights [in, out].
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's binomial FIR filter
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps activations at unit variance after a leaky ReLU

_NHWC = ("NHWC", "HWIO", "NHWC")
normal = nnx.initializers.normal(1.0)


def _fir_1d(x: jax.Array, taps: np.ndarray, axis: int, up: int, down: int, pad) -> jax.Array:
    """Along one axis: zero insertion by `up`, padding, correlation with flipped taps, stride."""
    if up > 1:
        x = jnp.stack([x] + [jnp.zeros_like(x)] * (up - 1), axis=axis + 1)
        shape = list(x.shape)
        shape[axis : axis + 2] = [shape[axis] * up]
        x = x.reshape(shape)
    widths = [(0, 0)] * x.ndim
    widths[axis] = pad
    x = jnp.pad(x, widths)
    n_out = x.shape[axis] - len(taps) + 1
    out = 0.0
    for i, tap in enumerate(np.flip(taps)):
        out = out + float(tap) * jax.lax.slice_in_dim(x, i, i + n_out, axis=axis)
    return jax.lax.slice_in_dim(out, 0, n_out, stride=down, axis=axis)


def upfirdn2d(
    x_BHWC: jax.Array, *, gain: float = 1.0, up=1, down=1, pad=(0, 0), taps=BLUR_TAPS
) -> jax.Array:
    """StyleGAN2's upfirdn2d with the separable normalised blur filter times `gain`.

    Done as shifted slices per axis: XLA's depthwise conv is an order of magnitude slower on
    CPU, and the filter is separable anyway.
    """
    k = np.asarray(taps, np.float64)
    k = k / k.sum() * np.sqrt(gain)
    x = _fir_1d(x_BHWC, k, 1, up, down, pad)
    return _fir_1d(x, k, 2, up, down, pad)


def zero_insert2x(x_BHWC: jax.Array) -> jax.Array:
    """`[B, 2H, 2W, C]` with x at even positions and zeros elsewhere."""
    B, H, W, C = x_BHWC.shape
    z = jnp.zeros_like(x_BHWC)
    rows = jnp.stack([x_BHWC, z], axis=2).reshape(B, 2 * H, W, C)
    return jnp.stack([rows, jnp.zeros_like(rows)], axis=3).reshape(B, 2 * H, 2 * W, C)


def fused_leaky_relu(x: jax.Array, bias: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(x + bias, LRELU_SLOPE) * LRELU_GAIN


class FusedLeakyReLU(nnx.Module):
    """Bias, leaky ReLU, and the sqrt(2) gain, as one op."""

    def __init__(self, channels: int):
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return fused_leaky_relu(x, self.bias[...])


class EqualConv2d(nnx.Module):
    """Conv with equalised learning rate; `stride=2` is used after a blur to downsample."""

    def __init__(self, c_in, c_out, k, *, stride=1, padding=0, bias=True, rngs: nnx.Rngs):
        self.weight = nnx.Param(normal(rngs.params(), (k, k, c_in, c_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c_out,), jnp.float32)) if bias else None
        self.scale = 1.0 / math.sqrt(c_in * k * k)
        self.stride = stride
        self.padding = padding

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x_BHWC,
            self.weight[...] * self.scale,
            window_strides=(self.stride, self.stride),
            padding=[(self.padding, self.padding)] * 2,
            dimension_numbers=_NHWC,
        )
        return y if self.bias is None else y + self.bias[...]


class EqualLinear(nnx.Module):
    """Linear layer with equalised learning rate; optional fused leaky ReLU."""

    def __init__(self, d_in, d_out, *, bias_init=0.0, lr_mul=1.0, activation=False, rngs: nnx.Rngs):
        self.weight = nnx.Param(normal(rngs.params(), (d_in, d_out), jnp.float32) / lr_mul)
        self.bias = nnx.Param(jnp.full((d_out,), bias_init, jnp.float32))
        self.scale = lr_mul / math.sqrt(d_in)
        self.lr_mul = lr_mul
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ (self.weight[...] * self.scale)
        bias = self.bias[...] * self.lr_mul
        return fused_leaky_relu(y, bias) if self.activation else y + bias


class ConvLayer(nnx.Module):
    """[blur] -> equalised conv -> [fused leaky ReLU]: StyleGAN2's plain conv layer."""

    def __init__(
        self, c_in, c_out, k, *, downsample=False, bias=True, activate=True, rngs: nnx.Rngs
    ):
        self.downsample = downsample
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (k - 1)
            self.blur_pad = ((p + 1) // 2, p // 2)
        self.conv = EqualConv2d(
            c_in,
            c_out,
            k,
            stride=2 if downsample else 1,
            padding=0 if downsample else k // 2,
            bias=bias and not activate,
            rngs=rngs,
        )
        # LIA never builds a conv with activate=True and bias=False, so that case is left out.
        self.act = FusedLeakyReLU(c_out) if activate else None

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        if self.downsample:
            x_BHWC = upfirdn2d(x_BHWC, pad=self.blur_pad)
        y = self.conv(x_BHWC)
        return y if self.act is None else self.act(y)


class ResBlock(nnx.Module):
    """Residual block that halves the resolution (encoder and discriminator)."""

    def __init__(self, c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.conv1 = ConvLayer(c_in, c_in, 3, rngs=rngs)
        self.conv2 = ConvLayer(c_in, c_out, 3, downsample=True, rngs=rngs)
        self.skip = ConvLayer(
            c_in, c_out, 1, downsample=True, activate=False, bias=False, rngs=rngs
        )

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        out = self.conv2(self.conv1(x_BHWC))
        return (out + self.skip(x_BHWC)) / math.sqrt(2.0)


class ModulatedConv2d(nnx.Module):
    """Style-modulated conv with optional demodulation and 2x transposed-conv upsampling.

    Modulating the input channels and demodulating the output channels is the same linear map
    as StyleGAN2's per-sample weights, but keeps one shared kernel, so the batch needs no
    grouped conv.
    """

    def __init__(
        self, c_in, c_out, k, style_dim, *, demodulate=True, upsample=False, rngs: nnx.Rngs
    ):
        self.weight = nnx.Param(normal(rngs.params(), (k, k, c_in, c_out), jnp.float32))
        self.modulation = EqualLinear(style_dim, c_in, bias_init=1.0, rngs=rngs)
        self.scale = 1.0 / math.sqrt(c_in * k * k)
        self.k = k
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_TAPS) - 2) - (k - 1)
            self.blur_pad = ((p + 1) // 2 + 1, p // 2 + 1)

    def __call__(self, x_BHWC: jax.Array, style_BD: jax.Array) -> jax.Array:
        s_BI = self.modulation(style_BD)
        w_HWIO = self.weight[...] * self.scale
        x_BHWC = x_BHWC * s_BI[:, None, None, :]
        if self.upsample:
            # A stride-2 transposed conv is a conv of the zero-dilated input with the flipped
            # kernel; the blur (gain 4) then removes the checkerboard.
            # Zeros and padding are explicit: XLA's CPU kernel gradient of an lhs-dilated or
            # asymmetrically padded conv is ~50x slower than that of a VALID one.
            pad = (self.k - 1, self.k - 2)
            y = jax.lax.conv_general_dilated(
                jnp.pad(zero_insert2x(x_BHWC), ((0, 0), pad, pad, (0, 0))),
                jnp.flip(w_HWIO, (0, 1)),
                window_strides=(1, 1),
                padding="VALID",
                dimension_numbers=_NHWC,
            )
            y = upfirdn2d(y, gain=4.0, pad=self.blur_pad)
        else:
            y = jax.lax.conv_general_dilated(
                x_BHWC,
                w_HWIO,
                window_strides=(1, 1),
                padding=[(self.k // 2, self.k // 2)] * 2,
                dimension_numbers=_NHWC,
            )
        if self.demodulate:
            energy_BO = jnp.einsum("bi,io->bo", s_BI**2, jnp.sum(w_HWIO**2, axis=(0, 1)))
            y = y * jax.lax.rsqrt(energy_BO + 1e-8)[:, None, None, :]
        return y


class StyledConv(nnx.Module):
    """Modulated conv, noise injection (its weight exists for checkpoints; no noise is fed at
    run time, as in LIA's decoder), fused leaky ReLU."""

    def __init__(self, c_in, c_out, k, style_dim, *, upsample=False, rngs: nnx.Rngs):
        self.conv = ModulatedConv2d(c_in, c_out, k, style_dim, upsample=upsample, rngs=rngs)
        self.noise_weight = nnx.Param(jnp.zeros((1,), jnp.float32))
        self.act = FusedLeakyReLU(c_out)

    def __call__(self, x_BHWC: jax.Array, style_BD: jax.Array) -> jax.Array:
        return self.act(self.conv(x_BHWC, style_BD))


def upsample2x(x_BHWC: jax.Array) -> jax.Array:
    """StyleGAN2's FIR upsampling, used on the RGB and flow skips."""
    p = len(BLUR_TAPS) - 2
    return upfirdn2d(x_BHWC, gain=4.0, up=2, pad=((p + 1) // 2 + 1, p // 2))


class ToRGB(nnx.Module):
    """1x1 conv (with activation, as in LIA) to RGB, plus the upsampled skip from below."""

    def __init__(self, c_in: int, *, rngs: nnx.Rngs):
        self.conv = ConvLayer(c_in, 3, 1, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((3,), jnp.float32))

    def __call__(self, x_BHWC: jax.Array, skip_BhwC: jax.Array | None = None) -> jax.Array:
        out = self.conv(x_BHWC) + self.bias[...]
        return out if skip_BhwC is None else out + upsample2x(skip_BhwC)
