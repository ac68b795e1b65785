"""The KL autoencoder that maps frames to the latent space the sDiT denoises in.

The architecture is Stable Diffusion's VAE as diffusers' `AutoencoderKL` builds it: a conv
encoder of residual down blocks, a mid block (residual, single-head self-attention,
residual), a Gaussian posterior over `latent_channels` (mean, log-variance) and the mirrored
decoder. `sd_vae_config()` is the 8x-down, 4-channel SD model (scale factor 0.18215);
`small_vae_config()` is a two-level variant for tests.

Attribute names follow the diffusers state-dict keys (`down_blocks`, `resnets`, `norm1`,
`conv_shortcut`, `mid_block.attentions`, `to_out`), so `interop/diffusers_vae.py` maps
every key mechanically. Tensors are NHWC; convolution kernels are HWIO.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

# diffusers' VAE uses eps=1e-6 in every GroupNorm (resnets, attention, conv_norm_out).
GROUP_NORM_EPS = 1e-6
# diffusers' DiagonalGaussianDistribution clamps the log-variance to this range.
LOGVAR_RANGE = (-30.0, 20.0)


@dataclasses.dataclass(frozen=True)
class AutoencoderKLConfig:
    """The fields of a diffusers `AutoencoderKL` config.json that fix the architecture."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)  # one level per entry
    layers_per_block: int = 2  # resnets per encoder level (decoder: one more)
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215  # latents are multiplied by this before diffusion
    shift_factor: float = 0.0  # subtracted before scaling (0 for the SD VAE)
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        for name in ("in_channels", "out_channels", "layers_per_block", "latent_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"vae.{name}: expected a positive int, got {value!r}")
        if not self.block_out_channels or any(
            not isinstance(c, int) or c < 1 for c in self.block_out_channels
        ):
            raise ValueError(
                f"vae.block_out_channels: expected positive ints, got {self.block_out_channels!r}"
            )
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"vae.norm_num_groups: {self.norm_num_groups} does not divide channels {bad}"
            )

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent along each side: 2 per level but the last (8 for SD)."""
        return 2 ** (len(self.block_out_channels) - 1)


def sd_vae_config() -> AutoencoderKLConfig:
    """Stable Diffusion's VAE (e.g. stabilityai/sd-vae-ft-mse): 8x down, 4 latent channels."""
    return AutoencoderKLConfig()


def small_vae_config() -> AutoencoderKLConfig:
    """A 2x-down variant with the same structure, for tests on CPU."""
    return AutoencoderKLConfig(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8)


# ---------------------------------------------------------------------------- layers
def _uniform(fan_in: int):
    # torch's default conv/linear init (kaiming-uniform a=sqrt(5) -> U(+-1/sqrt(fan_in))).
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class Conv(nnx.Module):
    """k x k convolution, NHWC in and out, HWIO kernel; `padding` pixels on every side."""

    def __init__(self, in_ch: int, out_ch: int, k: int, *, stride=1, padding=None, rngs):
        init = _uniform(in_ch * k * k)
        self.kernel = nnx.Param(init(rngs.params(), (k, k, in_ch, out_ch)))
        self.bias = nnx.Param(init(rngs.params(), (out_ch,)))
        self.stride = stride
        self.padding = k // 2 if padding is None else padding

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        pad = self.padding
        y = jax.lax.conv_general_dilated(
            x_BHWC,
            self.kernel[...],
            window_strides=(self.stride, self.stride),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return y + self.bias[...]


class Linear(nnx.Module):
    def __init__(self, in_features: int, out_features: int, *, rngs):
        init = _uniform(in_features)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, out_features)))
        self.bias = nnx.Param(init(rngs.params(), (out_features,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("...i,io->...o", x, self.kernel[...], precision=jax.lax.Precision.HIGHEST)
        return y + self.bias[...]


class GroupNorm(nnx.Module):
    """GroupNorm over the channel axis (last) with a per-channel affine."""

    def __init__(self, groups: int, channels: int):
        self.groups = groups
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        B, H, W, C = x_BHWC.shape
        x_BHWGc = x_BHWC.reshape(B, H, W, self.groups, C // self.groups)
        mean = x_BHWGc.mean(axis=(1, 2, 4), keepdims=True)
        var = jnp.square(x_BHWGc - mean).mean(axis=(1, 2, 4), keepdims=True)
        x_BHWGc = (x_BHWGc - mean) * jax.lax.rsqrt(var + GROUP_NORM_EPS)
        return x_BHWGc.reshape(B, H, W, C) * self.scale[...] + self.bias[...]


class ResnetBlock(nnx.Module):
    """norm-SiLU-conv twice, plus a 1x1 shortcut conv when the width changes."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, *, rngs):
        self.norm1 = GroupNorm(groups, in_ch)
        self.conv1 = Conv(in_ch, out_ch, 3, rngs=rngs)
        self.norm2 = GroupNorm(groups, out_ch)
        self.conv2 = Conv(out_ch, out_ch, 3, rngs=rngs)
        self.conv_shortcut = Conv(in_ch, out_ch, 1, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x_BHWC)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        skip = x_BHWC if self.conv_shortcut is None else self.conv_shortcut(x_BHWC)
        return skip + h


class SpatialAttention(nnx.Module):
    """Single-head self-attention over all H*W positions, with a residual connection."""

    def __init__(self, channels: int, groups: int, *, rngs):
        self.group_norm = GroupNorm(groups, channels)
        self.to_q = Linear(channels, channels, rngs=rngs)
        self.to_k = Linear(channels, channels, rngs=rngs)
        self.to_v = Linear(channels, channels, rngs=rngs)
        self.to_out = nnx.List([Linear(channels, channels, rngs=rngs)])

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        B, H, W, C = x_BHWC.shape
        h_BLC = self.group_norm(x_BHWC).reshape(B, H * W, C)
        q, k, v = self.to_q(h_BLC), self.to_k(h_BLC), self.to_v(h_BLC)
        hi = jax.lax.Precision.HIGHEST
        logits_BLL = jnp.einsum("bqc,bkc->bqk", q, k, precision=hi) / math.sqrt(C)
        probs_BLL = jax.nn.softmax(logits_BLL, axis=-1)
        out_BLC = self.to_out[0](jnp.einsum("bqk,bkc->bqc", probs_BLL, v, precision=hi))
        return x_BHWC + out_BLC.reshape(B, H, W, C)


class Downsample(nnx.Module):
    """Stride-2 3x3 conv after padding one zero row/column at the bottom/right (diffusers)."""

    def __init__(self, channels: int, *, rngs):
        self.conv = Conv(channels, channels, 3, stride=2, padding=0, rngs=rngs)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        return self.conv(jnp.pad(x_BHWC, ((0, 0), (0, 1), (0, 1), (0, 0))))


class Upsample(nnx.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int, *, rngs):
        self.conv = Conv(channels, channels, 3, rngs=rngs)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x_BHWC, 2, axis=1), 2, axis=2))


class Level(nnx.Module):
    """One encoder or decoder level: resnets, then an optional down/upsampler."""

    def __init__(self, in_ch, out_ch, num_resnets, groups, resample, *, rngs):
        self.resnets = nnx.List(
            [
                ResnetBlock(in_ch if i == 0 else out_ch, out_ch, groups, rngs=rngs)
                for i in range(num_resnets)
            ]
        )
        if resample == "down":
            self.downsamplers = nnx.List([Downsample(out_ch, rngs=rngs)])
        elif resample == "up":
            self.upsamplers = nnx.List([Upsample(out_ch, rngs=rngs)])
        self.resample = resample

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x_BHWC = resnet(x_BHWC)
        if self.resample == "down":
            x_BHWC = self.downsamplers[0](x_BHWC)
        elif self.resample == "up":
            x_BHWC = self.upsamplers[0](x_BHWC)
        return x_BHWC


class MidBlock(nnx.Module):
    def __init__(self, channels: int, groups: int, add_attention: bool, *, rngs):
        self.resnets = nnx.List([ResnetBlock(channels, channels, groups, rngs=rngs) for _ in "ab"])
        self.attentions = (
            nnx.List([SpatialAttention(channels, groups, rngs=rngs)]) if add_attention else None
        )

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        x_BHWC = self.resnets[0](x_BHWC)
        if self.attentions is not None:
            x_BHWC = self.attentions[0](x_BHWC)
        return self.resnets[1](x_BHWC)


class Encoder(nnx.Module):
    """Pixels -> 2*latent_channels moments (mean, log-variance) at 1/downsample_factor."""

    def __init__(self, config: AutoencoderKLConfig, *, rngs):
        chans, g = config.block_out_channels, config.norm_num_groups
        self.conv_in = Conv(config.in_channels, chans[0], 3, rngs=rngs)
        last = len(chans) - 1
        self.down_blocks = nnx.List(
            [
                Level(
                    chans[max(i - 1, 0)],
                    chans[i],
                    config.layers_per_block,
                    g,
                    "down" if i < last else None,
                    rngs=rngs,
                )  # fmt: skip
                for i in range(len(chans))
            ]
        )
        self.mid_block = MidBlock(chans[-1], g, config.mid_block_add_attention, rngs=rngs)
        self.conv_norm_out = GroupNorm(g, chans[-1])
        self.conv_out = Conv(chans[-1], 2 * config.latent_channels, 3, rngs=rngs)

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        h = self.conv_in(x_BHWC)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(h)))


class Decoder(nnx.Module):
    """Latents -> pixels; levels mirror the encoder's with one extra resnet each."""

    def __init__(self, config: AutoencoderKLConfig, *, rngs):
        chans, g = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = Conv(config.latent_channels, chans[0], 3, rngs=rngs)
        self.mid_block = MidBlock(chans[0], g, config.mid_block_add_attention, rngs=rngs)
        last = len(chans) - 1
        self.up_blocks = nnx.List(
            [
                Level(
                    chans[max(i - 1, 0)],
                    chans[i],
                    config.layers_per_block + 1,
                    g,
                    "up" if i < last else None,
                    rngs=rngs,
                )  # fmt: skip
                for i in range(len(chans))
            ]
        )
        self.conv_norm_out = GroupNorm(g, chans[-1])
        self.conv_out = Conv(chans[-1], config.out_channels, 3, rngs=rngs)

    def __call__(self, z_BhwC: jax.Array) -> jax.Array:
        h = self.mid_block(self.conv_in(z_BhwC))
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(h)))


# ---------------------------------------------------------------------------- model
class AutoencoderKL(nnx.Module):
    """Encoder + Gaussian posterior + decoder. Pixels are NHWC in [-1, 1]."""

    def __init__(self, config: AutoencoderKLConfig, *, rngs: nnx.Rngs):
        self.config = config
        lc = config.latent_channels
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)
        self.quant_conv = Conv(2 * lc, 2 * lc, 1, rngs=rngs) if config.use_quant_conv else None
        self.post_quant_conv = Conv(lc, lc, 1, rngs=rngs) if config.use_post_quant_conv else None

    def _check(self, x, channels: int, name: str, multiple: int = 1) -> None:
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ValueError(f"{name}: expected [B, H, W, {channels}], got shape {x.shape}")
        if x.shape[1] % multiple or x.shape[2] % multiple:
            raise ValueError(
                f"{name}: H and W must be multiples of {multiple}, got shape {x.shape}"
            )

    def posterior(self, x_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and (clamped) log-variance of q(z|x), unscaled, `[B, h, w, latent_channels]`."""
        self._check(x_BHWC, self.config.in_channels, "pixels_BHWC", self.config.downsample_factor)
        moments = self.encoder(x_BHWC.astype(jnp.float32))
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def encode(self, x_BHWC: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Scaled latents for the diffusion model: the posterior mean, or a sample with `key`."""
        mean, logvar = self.posterior(x_BHWC)
        z = mean
        if key is not None:
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode(self, latents_BhwC: jax.Array) -> jax.Array:
        """Pixels (about [-1, 1], not clipped) from scaled latents."""
        self._check(latents_BhwC, self.config.latent_channels, "latents_BhwC")
        z = latents_BhwC.astype(jnp.float32) / self.config.scaling_factor + self.config.shift_factor
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)


# Both jitted entry points fold the frame axis into the batch: a clip `[B, K, H, W, C]` is
# B*K independent images to the autoencoder.
@nnx.jit
def encode_frames(vae, frames_BKHWC: jax.Array, key=None) -> jax.Array:
    """Frames in [-1, 1] -> scaled latents `[B, K, h, w, latent_channels]`."""
    B, K = frames_BKHWC.shape[:2]
    z = vae.encode(frames_BKHWC.reshape((B * K,) + frames_BKHWC.shape[2:]), key)
    return z.reshape((B, K) + z.shape[1:])


@nnx.jit
def decode_frames(vae, latents_BKhwC: jax.Array) -> jax.Array:
    """Scaled latents -> frames `[B, K, H, W, out_channels]`."""
    B, K = latents_BKhwC.shape[:2]
    x = vae.decode(latents_BKhwC.reshape((B * K,) + latents_BKhwC.shape[2:]))
    return x.reshape((B, K) + x.shape[1:])
