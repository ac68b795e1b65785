"""LEO's animator discriminator: StyleGAN2's residual discriminator, one realism logit per frame.

Residual blocks halve the resolution down to 4x4; a minibatch standard-deviation channel lets
it see the diversity of the batch (StyleGAN2: groups of up to 4 frames, one feature); a 3x3
conv and two linear layers give the logit. At 256² with LIA's channels it has 24.0M
parameters. Names follow the StyleGAN2 code LIA trains with (`convs`, `final_conv`,
`final_linear`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_stylegan_layers import ConvLayer, EqualLinear, ResBlock

STDDEV_GROUP = 4


def minibatch_stddev(x_BHWC: jax.Array, group: int = STDDEV_GROUP) -> jax.Array:
    """Appends one channel: the mean over features of the std across each group of frames."""
    B, H, W, C = x_BHWC.shape
    g = min(group, B)
    if B % g:
        raise ValueError(f"discriminator batch {B} is not divisible by its stddev group {g}")
    x_GnHWC = x_BHWC.reshape(g, B // g, H, W, C)
    std_nHWC = jnp.sqrt(jnp.var(x_GnHWC, axis=0) + 1e-8)
    feat_n = jnp.mean(std_nHWC, axis=(1, 2, 3))
    feat_BHW1 = jnp.broadcast_to(jnp.tile(feat_n, g)[:, None, None, None], (B, H, W, 1))
    return jnp.concatenate([x_BHWC, feat_BHW1], axis=-1)


class LeoDiscriminator(nnx.Module):
    def __init__(self, config: AnimatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        c_in = config.channels(config.image_size)
        convs = [ConvLayer(3, c_in, 1, rngs=rngs)]
        for log_res in range(config.log_size, 2, -1):
            c_out = config.channels(2 ** (log_res - 1))
            convs.append(ResBlock(c_in, c_out, rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        c4 = config.channels(4)
        self.final_conv = ConvLayer(c_in + 1, c4, 3, rngs=rngs)
        self.final_linear = nnx.List(
            [
                EqualLinear(c4 * 4 * 4, c4, activation=True, rngs=rngs),
                EqualLinear(c4, 1, rngs=rngs),
            ]
        )

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        """Realism logits `[B]` of frames in [-1, 1]."""
        h = x_BHWC
        for conv in self.convs:
            h = conv(h)
        h = self.final_conv(minibatch_stddev(h))
        # Flatten channel-first, as the reference does, so imported linear weights line up.
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
        for layer in self.final_linear:
            h = layer(h)
        return h[:, 0]
