"""VGG19 features from a torchvision-format state dict the test writes itself (no downloads)."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from anchored_jax.interop.lia_import import read_state_dict
from anchored_jax.models.leo_vgg19 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_BLOCKS,
    VGG19_CHANNELS,
    Vgg19Features,
    load_vgg19_state_dict,
)


def random_vgg19_state_dict(seed=0) -> dict[str, np.ndarray]:
    """Every key of torchvision's vgg19().state_dict(), with random values."""
    rng = np.random.default_rng(seed)
    sd, c_in = {}, 3
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    widths = [64, 64, 128, 128, 256, 256, 256, 256] + [512] * 8
    for index, c_out in zip(conv_indices, widths, strict=True):
        std = np.sqrt(2.0 / (9 * c_in))
        sd[f"features.{index}.weight"] = rng.normal(0, std, (c_out, c_in, 3, 3)).astype(np.float32)
        sd[f"features.{index}.bias"] = rng.normal(0, 0.05, (c_out,)).astype(np.float32)
        c_in = c_out
    for i, (a, b) in zip((0, 3, 6), ((25088, 64), (64, 64), (64, 10)), strict=True):
        sd[f"classifier.{i}.weight"] = np.zeros((b, a), np.float32)  # shrunk: unused here
        sd[f"classifier.{i}.bias"] = np.zeros((b,), np.float32)
    return sd


def reference_features(sd, x_BHWC):
    """relu_k_1 features with plain numpy-fed jax convs, from the torch layout directly."""
    import jax

    h = ((x_BHWC + 1) / 2 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    outs = []
    for b, block in enumerate(VGG19_BLOCKS):
        if b:
            B, H, W, C = h.shape
            h = h.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))
        for i, index in enumerate(block):
            w = jnp.asarray(sd[f"features.{index}.weight"])  # OIHW
            h = (
                jax.lax.conv_general_dilated(
                    jnp.asarray(h, jnp.float32),
                    w,
                    (1, 1),
                    "SAME",
                    dimension_numbers=("NHWC", "OIHW", "NHWC"),
                )
                + sd[f"features.{index}.bias"]
            )
            h = np.maximum(np.asarray(h), 0)
            if i == 0:
                outs.append(h)
    return outs


def test_import_from_safetensors_matches_reference(tmp_path):
    sd = random_vgg19_state_dict()
    path = str(tmp_path / "vgg19.safetensors")
    save_file(sd, path)
    vgg = Vgg19Features(rngs=nnx.Rngs(0))
    load_vgg19_state_dict(vgg, read_state_dict(path))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    got = vgg(jnp.asarray(x))
    want = reference_features(sd, x)
    assert [g.shape[-1] for g in got] == list(VGG19_CHANNELS)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)
        assert float(np.abs(w).mean()) > 1e-3  # features are not trivially zero


def test_import_from_torch_file_matches_torch_forward(tmp_path):
    torch = pytest.importorskip("torch")
    sd = random_vgg19_state_dict(seed=2)
    path = str(tmp_path / "vgg19.pth")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    vgg = Vgg19Features(rngs=nnx.Rngs(0))
    load_vgg19_state_dict(vgg, read_state_dict(path))
    x = np.random.default_rng(3).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    h = torch.from_numpy(x).permute(0, 3, 1, 2)
    h = ((h + 1) / 2 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[
        :, None, None
    ]
    want = []
    for b, block in enumerate(VGG19_BLOCKS):
        if b:
            h = torch.nn.functional.max_pool2d(h, 2)
        for i, index in enumerate(block):
            w, bias = sd[f"features.{index}.weight"], sd[f"features.{index}.bias"]
            h = torch.relu(
                torch.nn.functional.conv2d(
                    h, torch.from_numpy(w), torch.from_numpy(bias), padding=1
                )
            )
            if i == 0:
                want.append(h.permute(0, 2, 3, 1).numpy())
    for g, w in zip(vgg(jnp.asarray(x)), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def test_bad_state_dict_names_the_key(tmp_path):
    sd = random_vgg19_state_dict()
    del sd["features.21.weight"]
    vgg = Vgg19Features(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="missing 'features.21.weight'"):
        load_vgg19_state_dict(vgg, sd)
    sd = random_vgg19_state_dict()
    sd["features.5.bias"] = np.zeros((3,), np.float32)
    with pytest.raises(ValueError, match=r"'features.5.bias' has shape \(3,\), expected \(128,\)"):
        load_vgg19_state_dict(vgg, sd)
    with pytest.raises(ValueError, match="expected a .safetensors, .pt or .pth file"):
        (tmp_path / "w.bin").write_bytes(b"x")
        read_state_dict(str(tmp_path / "w.bin"))
