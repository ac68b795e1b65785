"""VGG19 features for LEO's perceptual loss, with weights from a torchvision-format state dict.

Only the convolutions up to conv5_1 exist: the loss reads relu1_1, relu2_1, relu3_1, relu4_1
and relu5_1 (the layers FOMM/LIA-style perceptual losses use). Inputs are frames in [-1, 1];
the ImageNet normalisation torchvision's weights expect happens inside. Nothing is downloaded:
`load_vgg19_state_dict` fills the model from arrays keyed like torchvision's
`vgg19().state_dict()` (`features.<index>.weight` [out, in, 3, 3], `.bias` [out]).

Without weights to import, a narrow random-init variant (`width_divisor`, `num_blocks`, He-normal
kernels) still gives a usable perceptual loss: random conv features measure multi-scale
structure (He, Wang and Hopcroft 2016, "A powerful generative model using random weights for
the deep image representation").
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# torchvision's vgg19 `features` indices of the convs we use, grouped by block; a max-pool
# separates the blocks, and the first relu of each block is a perceptual feature.
VGG19_BLOCKS = ((0, 2), (5, 7), (10, 12, 14, 16), (19, 21, 23, 25), (28,))
VGG19_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Vgg19Features(nnx.Module):
    """`x_BHWC` in [-1, 1] -> the five relu_k_1 feature maps."""

    def __init__(self, *, rngs: nnx.Rngs, width_divisor: int = 1, num_blocks: int = 5):
        """`width_divisor` 1 and `num_blocks` 5 is VGG19 (what torchvision weights fill);
        otherwise each block's channels are divided and only the first blocks exist."""
        if not 1 <= num_blocks <= len(VGG19_BLOCKS):
            raise ValueError(f"VGG19 blocks: expected 1..{len(VGG19_BLOCKS)}, got {num_blocks}")
        # Torchvision's own init for VGG (kaiming normal, fan_out, relu); the values of an
        # imported state dict replace it.
        kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        convs = {}
        c_in = 3
        blocks = zip(VGG19_BLOCKS[:num_blocks], VGG19_CHANNELS[:num_blocks], strict=True)
        for block, c_out in blocks:
            c_out = max(1, c_out // width_divisor)
            for index in block:
                convs[str(index)] = nnx.Conv(
                    c_in, c_out, (3, 3), padding=1, kernel_init=kernel_init, rngs=rngs
                )
                c_in = c_out
        self.features = nnx.Dict(convs)
        self.num_blocks = num_blocks

    def __call__(self, x_BHWC: jax.Array) -> list[jax.Array]:
        mean = jnp.asarray(IMAGENET_MEAN, x_BHWC.dtype)
        std = jnp.asarray(IMAGENET_STD, x_BHWC.dtype)
        h = ((x_BHWC + 1.0) / 2.0 - mean) / std
        outputs = []
        for b, block in enumerate(VGG19_BLOCKS[: self.num_blocks]):
            if b > 0:
                h = nnx.max_pool(h, (2, 2), strides=(2, 2))
            for i, index in enumerate(block):
                h = jax.nn.relu(self.features[str(index)](h))
                if i == 0:
                    outputs.append(h)
        return outputs


def load_vgg19_state_dict(model: Vgg19Features, state_dict: Mapping[str, np.ndarray]) -> None:
    """Copies torchvision-format VGG19 weights into `model` in place.

    Keys other than the convs used (the later convs, the classifier) are ignored; a missing or
    misshapen one raises a one-line ValueError naming it.
    """
    for block, c_out in zip(VGG19_BLOCKS, VGG19_CHANNELS, strict=True):
        for index in block:
            conv = model.features[str(index)]
            c_in = conv.kernel.shape[2]
            for name, shape in (("weight", (c_out, c_in, 3, 3)), ("bias", (c_out,))):
                key = f"features.{index}.{name}"
                if key not in state_dict:
                    raise ValueError(f"VGG19 state dict: missing {key!r}")
                value = np.asarray(state_dict[key], np.float32)
                if value.shape != shape:
                    raise ValueError(
                        f"VGG19 state dict: {key!r} has shape {value.shape}, expected {shape}"
                    )
                if name == "weight":  # torch OIHW -> flax HWIO
                    conv.kernel[...] = jnp.asarray(value.transpose(2, 3, 1, 0))
                else:
                    conv.bias[...] = jnp.asarray(value)
