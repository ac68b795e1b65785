"""Identity embeddings for CSIM and AED: an ArcFace IResNet with weights from a file.

The network is insightface's arcface_torch IResNet (Deng et al., "ArcFace", 2019): a 3x3 stem
with PReLU, four stages of pre-activation basic blocks (bn1, conv1, bn2, PReLU, conv2 with the
stage's stride 2, bn3, plus a 1x1 conv + bn shortcut in each stage's first block), then bn2,
a linear layer from the flattened 7x7 map and a 1-d batch norm ("features"): a 512-d
embedding of a 112x112 aligned face. Batch norms use eps 1e-5. Nothing is downloaded:
`load_identity_embedder` reads a state dict such as arcface_torch's `backbone.pth`. Images
are in [-1, 1] (arcface_torch's `(img / 255 - 0.5) / 0.5`), resized inside to 112x112.

`identity_similarity` turns two sets of embeddings into the metrics reenactment papers
report: CSIM, the cosine similarity of output and source identities, and AED, the Euclidean
distance of the L2-normalised embeddings (so AED^2 = 2 - 2 CSIM per pair).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.evaluation.torch_layout_layers import (
    BatchNorm,
    Conv,
    Linear,
    PReLU,
    frozen_apply,
    load_torch_state_dict,
    resize_bilinear,
)

FACE_SIZE = 112
EMBEDDING_DIM = 512
BN_EPS = 1e-5
FC_GRID = 7  # a 112x112 face is 7x7 after the four stride-2 stages
# Blocks per stage of the published depths.
IRESNET_LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
STAGE_CHANNELS = (64, 128, 256, 512)


class IBasicBlock(nnx.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        self.bn1 = BatchNorm(c_in, eps=BN_EPS)
        self.conv1 = Conv(c_in, c_out, (3, 3), padding=1)
        self.bn2 = BatchNorm(c_out, eps=BN_EPS)
        self.prelu = PReLU(c_out)
        self.conv2 = Conv(c_out, c_out, (3, 3), stride=stride, padding=1)
        self.bn3 = BatchNorm(c_out, eps=BN_EPS)
        projection = stride != 1 or c_in != c_out
        shortcut = [Conv(c_in, c_out, (1, 1), stride=stride), BatchNorm(c_out, eps=BN_EPS)]
        self.downsample = nnx.List(shortcut) if projection else None

    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        y = self.prelu(self.bn2(self.conv1(self.bn1(x_NHWC))))
        y = self.bn3(self.conv2(y))
        if self.downsample is None:
            return y + x_NHWC
        conv, bn = self.downsample
        return y + bn(conv(x_NHWC))


class IResNet(nnx.Module):
    """`faces_NHWC` in [-1, 1], 112x112 -> identity embeddings [N, 512] (not normalised)."""

    def __init__(
        self,
        *,
        layers: tuple[int, ...] = IRESNET_LAYERS[50],
        width: float = 1.0,
        embedding_dim: int = EMBEDDING_DIM,
    ):
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"iresnet layers: expected 4 positive block counts, got {layers}")
        channels = [max(1, round(c * width)) for c in STAGE_CHANNELS]
        self.conv1 = Conv(3, channels[0], (3, 3), padding=1)
        self.bn1 = BatchNorm(channels[0], eps=BN_EPS)
        self.prelu = PReLU(channels[0])
        c_in = channels[0]
        for stage, (blocks, c_out) in enumerate(zip(layers, channels, strict=True)):
            stage_blocks = [IBasicBlock(c_in, c_out, 2)]
            stage_blocks += [IBasicBlock(c_out, c_out, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", nnx.List(stage_blocks))
            c_in = c_out
        self.bn2 = BatchNorm(c_in, eps=BN_EPS)
        self.fc = Linear(c_in * FC_GRID * FC_GRID, embedding_dim)
        self.features = BatchNorm(embedding_dim, eps=BN_EPS)

    def stem(self, faces_NHWC: jax.Array) -> jax.Array:
        return self.prelu(self.bn1(self.conv1(faces_NHWC)))

    def __call__(self, faces_NHWC: jax.Array) -> jax.Array:
        if faces_NHWC.ndim != 4 or faces_NHWC.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(f"iresnet faces: expected [N, 112, 112, 3], got {faces_NHWC.shape}")
        x = self.stem(faces_NHWC)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = block(x)
        x = self.bn2(x)
        # The fc weight reads PyTorch's NCHW flattening order.
        x_NF = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        return self.features(self.fc(x_NF))


def load_identity_weights(path: str, *, depth: int = 50, width: float = 1.0, layers=None):
    """An `IResNet` (iresnet18/34/50/100 by `depth`, or explicit `layers`) filled from a file."""
    # Key layout: deepinsight/insightface recognition/arcface_torch/backbones/iresnet.py.
    if layers is None:
        if depth not in IRESNET_LAYERS:
            raise ValueError(
                f"iresnet depth: expected one of {sorted(IRESNET_LAYERS)}, got {depth}"
            )
        layers = IRESNET_LAYERS[depth]
    model = IResNet(layers=tuple(layers), width=width)
    load_torch_state_dict(model, path)
    return model


def load_identity_embedder(path: str, *, depth: int = 50, width: float = 1.0, layers=None):
    """`images_NHWC` in [-1, 1], any size -> identity embeddings [N, 512] (jitted).

    Images should be aligned face crops; they are resized to 112x112 inside.
    """
    model = load_identity_weights(path, depth=depth, width=width, layers=layers)
    return frozen_apply(model, lambda images: resize_bilinear(images, FACE_SIZE))


def identity_similarity(emb_out_ND, emb_src_ND) -> dict[str, float]:
    """Mean CSIM (cosine similarity) and AED (distance of unit embeddings) over pairs."""
    out = np.asarray(emb_out_ND, np.float64)
    src = np.asarray(emb_src_ND, np.float64)
    if out.ndim != 2 or out.shape != src.shape:
        raise ValueError(
            f"identity embeddings: expected two [N, D] arrays of one shape, got "
            f"{out.shape} and {src.shape}"
        )
    out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    src = src / np.maximum(np.linalg.norm(src, axis=1, keepdims=True), 1e-12)
    csim = np.sum(out * src, axis=1)
    aed = np.linalg.norm(out - src, axis=1)
    return {"csim": float(np.mean(csim)), "aed": float(np.mean(aed))}
