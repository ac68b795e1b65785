"""The one linear layer of the sDiT: a kernel and bias with logical axis names attached.

`nnx.Linear` would do, but naming both axes of every kernel (and the bias) is the point
here, so the layer takes the names directly. Compute happens in the config's dtype.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from anchored_jax.models.logical_axes import param_init

xavier_uniform = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()


class Dense(nnx.Module):
    """y = x @ kernel + bias over the last axis; kernel axes named `names=(in, out)`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        names: tuple[str, str],
        *,
        dtype,
        param_dtype,
        rngs: nnx.Rngs,
        kernel_init=xavier_uniform,
        bias_init=zeros,
    ):
        self.dtype = dtype
        self.kernel = nnx.Param(
            param_init(kernel_init, *names)(rngs.params(), (in_features, out_features), param_dtype)
        )
        self.bias = nnx.Param(
            param_init(bias_init, names[1])(rngs.params(), (out_features,), param_dtype)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        y = jnp.einsum("...i,io->...o", x, self.kernel[...].astype(self.dtype))
        return y + self.bias[...].astype(self.dtype)
