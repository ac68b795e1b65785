"""Global identity condition of the sDiT: who the face is, from the source image.

Two modes (config `identity`):
- `encoder`: a small learned conv encoder over the source frame (same H, W, C as the
  clip's frames), mean-pooled and projected to D. Trained with the model.
- `embedding`: an external vector (e.g. a CLIP image embedding, as the paper's authors
  used for faces) projected to D by one linear layer.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.dense import Dense, xavier_uniform, zeros
from anchored_jax.models.embeddings import COND_MLP_INIT
from anchored_jax.models.logical_axes import param_init


class Conv3x3(nnx.Module):
    """3x3 SAME convolution with named kernel axes (h, w, in, out)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, dtype, param_dtype, rngs):
        self.stride = stride
        self.dtype = dtype
        names = ("kernel_h", "kernel_w", "conv_in", "conv_out")
        self.kernel = nnx.Param(
            param_init(xavier_uniform, *names)(rngs.params(), (3, 3, in_ch, out_ch), param_dtype)
        )
        self.bias = nnx.Param(param_init(zeros, "conv_out")(rngs.params(), (out_ch,), param_dtype))

    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x_BHWC.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            window_strides=(self.stride, self.stride),
            padding="SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...].astype(self.dtype)


class IdentityEncoder(nnx.Module):
    """Source image -> D: a stride-1 stem, then one stride-2 conv per further width.

    No normalisation layers: the encoder is shallow and its output only enters through
    the adaLN sum, which the blocks' zero-initialised gates keep tame early on.
    """

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        chans = config.identity_channels
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.convs = nnx.List(
            [Conv3x3(config.in_channels, chans[0], 1, **kw)]
            + [Conv3x3(a, b, 2, **kw) for a, b in zip(chans[:-1], chans[1:])]
        )
        self.proj = Dense(chans[-1], config.width, ("conv_out", "embed"), **kw)

    def __call__(self, identity_BHWC: jax.Array) -> jax.Array:
        h = identity_BHWC
        for conv in self.convs:
            h = jax.nn.silu(conv(h))
        return self.proj(jnp.mean(h, axis=(1, 2)))


class IdentityProjection(nnx.Module):
    """External identity vector `identity_BE` -> D."""

    def __init__(self, config, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.proj = Dense(
            config.identity_embed_dim,
            config.width,
            ("cond_in", "embed"),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
            kernel_init=COND_MLP_INIT,
        )

    def __call__(self, identity_BE: jax.Array) -> jax.Array:
        return self.proj(identity_BE)
