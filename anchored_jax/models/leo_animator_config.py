"""Sizes of LEO's animator (encoder, generator, discriminator), validated once.

LIA's 256² animator is `AnimatorConfig()`: channels min(512, 16384 / resolution), a 512-d latent
and 20 motion directions (wyhsirius/LIA, networks/). Tiny CPU variants shrink the channel base
and the latent; the architecture is unchanged.
"""

import dataclasses
import math

MIN_IMAGE_SIZE = 16  # the decoder starts at 4x4 and warps from 8x8 up
INITS = ("lia", "identity")
RGB_INPUTS = ("warped", "blended")


@dataclasses.dataclass(frozen=True)
class AnimatorConfig:
    image_size: int = 256  # frame side; a power of two >= 16
    style_dim: int = 512  # latent z and motion-dictionary rows
    motion_dim: int = 20  # number of learned motion directions (magnitudes alpha)
    channel_base: int = 16384  # channels at resolution r are min(max_channels, base / r)
    max_channels: int = 512
    motion_layers: int = 5  # linear layers of the motion MLP, no activations
    # "lia": LIA's random init. "identity": the generator starts as copy-source (the warp of
    # the source's full-size feature passes straight through to RGB); see
    # leo_generator.identity_start. Initial values only: parameters and math are LIA's.
    init: str = "lia"
    # What each scale's RGB head reads. "warped" (LIA): the masked warp of the source's
    # feature only, so every output pixel is moved source content. "blended": the feature the
    # decoder continues from, warped * mask + decoder * (1 - mask), so where the mask closes
    # the decoder's own features are drawn: content the source does not have (an open mouth,
    # a shut lid). Same parameters either way; LIA's checkpoints are "warped".
    rgb_input: str = "warped"

    def __post_init__(self):
        s = self.image_size
        if not isinstance(s, int) or s < MIN_IMAGE_SIZE or s & (s - 1):
            raise ValueError(
                f"model.image_size: expected a power of two >= {MIN_IMAGE_SIZE}, got {s!r}"
            )
        for name in ("style_dim", "motion_dim", "channel_base", "max_channels", "motion_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}: expected a positive integer, got {value!r}")
        if self.init not in INITS:
            raise ValueError(f"model.init: expected one of {list(INITS)}, got {self.init!r}")
        if self.rgb_input not in RGB_INPUTS:
            raise ValueError(
                f"model.rgb_input: expected one of {list(RGB_INPUTS)}, got {self.rgb_input!r}"
            )
        if self.init == "identity" and self.channels(s) < 6:
            raise ValueError(
                f"model.init: 'identity' needs >= 6 channels at {s}x{s}, got {self.channels(s)}"
            )
        if self.motion_dim > self.style_dim:
            raise ValueError(
                f"model.motion_dim: {self.motion_dim} directions cannot be orthonormal in "
                f"{self.style_dim} dimensions (model.style_dim)"
            )
        if self.channel_base < s:
            raise ValueError(
                f"model.channel_base: expected >= model.image_size ({s}), got {self.channel_base}"
            )

    @property
    def log_size(self) -> int:
        return int(math.log2(self.image_size))

    def channels(self, resolution: int) -> int:
        return min(self.max_channels, self.channel_base // resolution)

    def warp_resolutions(self) -> tuple[int, ...]:
        """Scales at which the generator predicts a flow and a mask: 8, 16, ..., image_size."""
        return tuple(2**i for i in range(3, self.log_size + 1))
