"""LEO's animator encoder: a frame -> its 512-d latent z, skip features, and motion magnitudes.

The appearance network is a StyleGAN2 residual tower (equalised convs, blur downsampling) from
the frame's resolution down to 4x4, then a 4x4 conv to the latent. Its intermediate features,
from 8x8 up to full size, are what the generator warps. The motion MLP is a stack of linear
layers with no activations (LIA: five, 512 -> ... -> 20), giving the magnitudes alpha along the
learned motion directions.
"""

import jax
from flax import nnx

from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_stylegan_layers import ConvLayer, EqualConv2d, EqualLinear, ResBlock


class AppearanceEncoder(nnx.Module):
    """`x_BHWC -> (z_BD, feats)`; feats[i] has resolution 8 * 2**i, up to the input size."""

    def __init__(self, config: AnimatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        size = config.image_size
        c_in = config.channels(size)
        convs = [ConvLayer(3, c_in, 1, rngs=rngs)]
        for log_res in range(config.log_size, 2, -1):
            c_out = config.channels(2 ** (log_res - 1))
            convs.append(ResBlock(c_in, c_out, rngs=rngs))
            c_in = c_out
        convs.append(EqualConv2d(c_in, config.style_dim, 4, bias=False, rngs=rngs))
        self.convs = nnx.List(convs)

    def __call__(self, x_BHWC: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        size = self.config.image_size
        assert x_BHWC.shape[1:] == (size, size, 3), f"expected [B, {size}, {size}, 3]"
        outs = []
        h = x_BHWC
        for conv in self.convs:
            h = conv(h)
            outs.append(h)
        z_BD = h.reshape(h.shape[0], -1)
        # outs: full size, size/2, ..., 8, 4, then the 1x1 latent; skip 4x4 and the latent.
        feats = tuple(reversed(outs[:-2]))
        return z_BD, feats


class LeoEncoder(nnx.Module):
    """The appearance network plus the linear motion MLP (`net_app`, `fc`, as in LIA)."""

    def __init__(self, config: AnimatorConfig, *, rngs: nnx.Rngs):
        self.net_app = AppearanceEncoder(config, rngs=rngs)
        d = config.style_dim
        widths = [d] * config.motion_layers + [config.motion_dim]
        self.fc = nnx.List(
            [EqualLinear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )

    def motion(self, z_BD: jax.Array) -> jax.Array:
        """Magnitudes alpha `[B, motion_dim]` of a latent along the motion directions."""
        h = z_BD
        for layer in self.fc:
            h = layer(h)
        return h

    def __call__(self, x_BHWC: jax.Array):
        """`(z_BD, feats, alpha_BM)` of a batch of frames."""
        z_BD, feats = self.net_app(x_BHWC)
        return z_BD, feats, self.motion(z_BD)
