"""Configuration of the sequence-DiT (sDiT): one frozen dataclass, validated on creation.

Defaults are the `tiny` CPU model. The trunk sizes S/B/L/XL are DiT's (`sdit_size`);
everything a later piece (trainer, sampler, benchmark) needs to know about the model's
shape lives here, and a bad value fails at construction with one line naming the field.
"""

import dataclasses

from anchored_jax.models.remat import check_remat_policy

# (width, depth, heads) per size; S/B/L/XL from DiT (Peebles & Xie 2023), Table 1.
SDIT_SIZES = {
    "tiny": {"width": 128, "depth": 4, "num_heads": 4},
    "S": {"width": 384, "depth": 12, "num_heads": 6},
    "B": {"width": 768, "depth": 12, "num_heads": 12},
    "L": {"width": 1024, "depth": 24, "num_heads": 16},
    "XL": {"width": 1152, "depth": 28, "num_heads": 16},
}

ATTENTION_KINDS = ("joint", "factorized")
ATTENTION_BACKENDS = ("xla", "cudnn", "splash", "splash_interpret")
IDENTITY_KINDS = ("encoder", "embedding", "class_label")
DTYPES = ("float32", "bfloat16")


def sdit_size(name: str) -> dict:
    """Returns the trunk fields (width, depth, num_heads) of a named size."""
    if name not in SDIT_SIZES:
        raise ValueError(f"model.size: expected one of {list(SDIT_SIZES)}, got {name!r}")
    return dict(SDIT_SIZES[name])


@dataclasses.dataclass(frozen=True)
class SDiTConfig:
    """Shape and knobs of an sDiT. Each field's comment gives its trade-off."""

    image_size: int = 32  # H == W of a frame: pixels for tiny, VAE latents for S/B/L/XL
    in_channels: int = 3  # channels of a frame (3 for pixels, 4 for SD latents)
    out_channels: int = 0  # 0 -> in_channels; 2*in reproduces DiT's learn_sigma head
    patch_size: int = 4  # p: tokens per frame N = (image_size / p)^2; smaller p = more compute
    width: int = 128  # D, the token width
    depth: int = 4  # number of adaLN-Zero blocks
    num_heads: int = 4  # attention heads; must divide width
    mlp_ratio: float = 4.0  # block MLP hidden = mlp_ratio * width
    max_frames: int = 16  # K' <= max_frames at run time; no frame-index table, so only a guard
    attention: str = "joint"  # "joint": all K*N tokens (cost ~K^2) | "factorized": within/across
    attention_backend: str = "xla"  # xla (reference) | cudnn (GPU, bf16) | splash (TPU)
    time_in_tokens: bool = True  # also add the frame-time embedding to each frame's tokens
    num_landmarks: int = 68  # L landmarks per frame (468 for MediaPipe FaceMesh)
    landmark_dim: int = 3  # C coordinates per landmark
    # "encoder": learned conv encoder | "embedding": external vector | "class_label": DiT's
    # class table (int labels; with both conditions below off and K=1 the model is DiT)
    identity: str = "encoder"
    num_classes: int = 1000  # class_label mode: classes, plus one null row (DiT's CFG label)
    frame_time_condition: bool = True  # False: no frame-time embedder (times are ignored)
    landmark_condition: bool = True  # False: no landmark embedder (landmarks are ignored)
    identity_embed_dim: int = 768  # size of the external identity vector (embedding mode)
    identity_channels: tuple[int, ...] = (64, 128, 256)  # conv encoder widths (encoder mode)
    # encoder mode: also add a patch embedding of the source image to every frame's tokens,
    # so each patch sees the source's pixels at its own position (dropped with the identity)
    identity_tokens: bool = False
    # also add each frame's landmark map (Gaussian dots at the model's resolution, patchified)
    # to its tokens, so every patch sees where the landmarks are (dropped with the landmarks)
    landmark_tokens: bool = False
    time_embed_period: float = 10.0  # seconds; longest period of the frame-time sinusoid
    scan_layers: bool = True  # scan stacked blocks (fast compile) vs a python loop
    remat_policy: str = "none"  # see remat.py: none | full | dots | dots_no_batch | ...
    dtype: str = "float32"  # compute dtype: float32 | bfloat16
    param_dtype: str = "float32"  # storage dtype of parameters

    def __post_init__(self):
        # ml_collections hands sequences over as lists; keep the dataclass hashable.
        object.__setattr__(self, "identity_channels", tuple(self.identity_channels))
        for name in (
            "image_size",
            "in_channels",
            "patch_size",
            "width",
            "depth",
            "num_heads",
            "max_frames",
            "num_landmarks",
            "landmark_dim",
            "identity_embed_dim",
            "num_classes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name}: expected a positive int, got {value!r}")
        if not isinstance(self.out_channels, int) or self.out_channels < 0:
            raise ValueError(f"model.out_channels: expected an int >= 0, got {self.out_channels!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"model.patch_size: {self.patch_size} does not divide "
                f"model.image_size {self.image_size}"
            )
        if self.width % self.num_heads:
            raise ValueError(
                f"model.num_heads: {self.num_heads} does not divide model.width {self.width}"
            )
        if self.width % 4:
            # The 2-D sin-cos position splits D into 2 axes x (sin, cos).
            raise ValueError(f"model.width: {self.width} must be a multiple of 4")
        if not self.mlp_ratio > 0:
            raise ValueError(f"model.mlp_ratio: expected > 0, got {self.mlp_ratio!r}")
        if not self.time_embed_period > 0:
            raise ValueError(
                f"model.time_embed_period: expected > 0 seconds, got {self.time_embed_period!r}"
            )
        if not self.identity_channels or any(
            not isinstance(c, int) or c < 1 for c in self.identity_channels
        ):
            raise ValueError(
                "model.identity_channels: expected a non-empty tuple of positive ints, "
                f"got {self.identity_channels!r}"
            )
        for name, allowed in (
            ("attention", ATTENTION_KINDS),
            ("attention_backend", ATTENTION_BACKENDS),
            ("identity", IDENTITY_KINDS),
            ("dtype", DTYPES),
            ("param_dtype", DTYPES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"model.{name}: expected one of {list(allowed)}, got {value!r}")
        if self.attention_backend == "cudnn" and self.dtype != "bfloat16":
            # cuDNN's fused attention has half-precision kernels only.
            raise ValueError(
                f"model.attention_backend: 'cudnn' needs model.dtype 'bfloat16', got {self.dtype!r}"
            )
        if self.time_in_tokens and not self.frame_time_condition:
            raise ValueError(
                "model.time_in_tokens: needs model.frame_time_condition=True "
                "(set both to False for the DiT-parity path)"
            )
        if self.identity_tokens and self.identity != "encoder":
            raise ValueError(
                "model.identity_tokens: needs model.identity='encoder' (a source image), "
                f"got {self.identity!r}"
            )
        if self.landmark_tokens and not self.landmark_condition:
            raise ValueError("model.landmark_tokens: needs model.landmark_condition=True")
        check_remat_policy(self.remat_policy)

    @property
    def output_channels(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def grid_size(self) -> int:
        """Patches per side of a frame."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens per frame, N."""
        return self.grid_size**2

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)
