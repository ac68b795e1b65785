"""LPIPS in Flax against a torch reference of the same computation, on weights saved here.

The backbone files follow torchvision's `alexnet()` / `vgg16()` state-dict layout (with a
classifier entry the loader must ignore), the linear files the `lpips` package's
`lin<i>.model.1.weight` layout; one of each pair is `.pth`, the other `.safetensors`.
"""

import numpy as np
import pytest

from anchored_jax.evaluation.lpips import load_lpips
from anchored_jax.interop.weight_files import WeightLayoutError

torch = pytest.importorskip("torch")
F = torch.nn.functional
save_safetensors = pytest.importorskip("safetensors.numpy").save_file

# torchvision's `features` as a layer list: ("C", out, kernel, stride, padding), "R", ("M", k, s).
ALEX_FEATURES = [
    ("C", 64, 11, 4, 2), "R", ("M", 3, 2),
    ("C", 192, 5, 1, 2), "R", ("M", 3, 2),
    ("C", 384, 3, 1, 1), "R",
    ("C", 256, 3, 1, 1), "R",
    ("C", 256, 3, 1, 1), "R", ("M", 3, 2),
]  # fmt: skip
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG16_FEATURES = [
    layer for v in VGG16_CFG for layer in ([("M", 2, 2)] if v == "M" else [("C", v, 3, 1, 1), "R"])
]
# lpips.pretrained_networks: the feature index after which each of the five slices ends.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
LAYERS = {"alex": ALEX_FEATURES, "vgg": VGG16_FEATURES}


def make_weights(net: str, seed: int):
    """He-initialised backbone (torchvision keys, plus a classifier) and lpips linear weights."""
    rng = np.random.default_rng(seed)
    backbone, c_in, channels = {}, 3, []
    for i, layer in enumerate(LAYERS[net]):
        if layer[0] == "C":
            _, c_out, k, _, _ = layer
            std = np.sqrt(2.0 / (c_in * k * k))
            backbone[f"features.{i}.weight"] = rng.normal(0, std, (c_out, c_in, k, k))
            backbone[f"features.{i}.bias"] = rng.normal(0, 0.01, (c_out,))
            c_in = c_out
        if i in TAPS[net]:
            channels.append(c_in)
    backbone["classifier.1.weight"] = rng.normal(0, 0.01, (10, 8))
    linear = {
        f"lin{i}.model.1.weight": rng.uniform(0, 1, (1, c, 1, 1)) for i, c in enumerate(channels)
    }
    as32 = lambda d: {k: v.astype(np.float32) for k, v in d.items()}  # noqa: E731
    return as32(backbone), as32(linear)


def torch_lpips(net: str, backbone, linear, x_NHWC: np.ndarray, y_NHWC: np.ndarray):
    """The lpips package's forward pass (v0.1, lpips=True), written with torch functionals."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def features(img_NHWC):
        h = (torch.from_numpy(img_NHWC).permute(0, 3, 1, 2) - shift) / scale
        taps = []
        for i, layer in enumerate(LAYERS[net]):
            if layer == "R":
                h = F.relu(h)
            elif layer[0] == "M":
                h = F.max_pool2d(h, kernel_size=layer[1], stride=layer[2])
            else:
                w = torch.from_numpy(backbone[f"features.{i}.weight"])
                b = torch.from_numpy(backbone[f"features.{i}.bias"])
                h = F.conv2d(h, w, b, stride=layer[3], padding=layer[4])
            if i in TAPS[net]:
                taps.append(h)
            if len(taps) == 5:
                return taps
        raise AssertionError("fewer than five taps")

    def unit(f):
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + 1e-10)

    total = 0.0
    for i, (fx, fy) in enumerate(zip(features(x_NHWC), features(y_NHWC), strict=True)):
        lin = torch.from_numpy(linear[f"lin{i}.model.1.weight"])
        total = total + F.conv2d((unit(fx) - unit(fy)) ** 2, lin).mean(dim=(2, 3), keepdim=True)
    return total.reshape(-1).numpy()


def save(path, weights, fmt):
    if fmt == "pth":
        torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, str(path))
    else:
        save_safetensors(weights, str(path))
    return str(path)


@pytest.mark.parametrize(
    "net, size, backbone_fmt, linear_fmt",
    [("alex", 64, "pth", "safetensors"), ("vgg", 32, "safetensors", "pth")],
)
def test_lpips_matches_torch_reference(tmp_path, net, size, backbone_fmt, linear_fmt):
    backbone, linear = make_weights(net, seed=0)
    metric = load_lpips(
        net,
        save(tmp_path / f"{net}_features.{backbone_fmt}", backbone, backbone_fmt),
        save(tmp_path / f"{net}_lin.{linear_fmt}", linear, linear_fmt),
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    # A lightly and a heavily perturbed copy: distances must differ and follow the noise.
    noise = rng.normal(0, 1, x.shape) * np.array([0.05, 0.5]).reshape(2, 1, 1, 1)
    y = np.clip(x + noise, -1, 1).astype(np.float32)
    ours = np.asarray(metric(x, y))
    reference = torch_lpips(net, backbone, linear, x, y)
    assert ours.shape == (2,)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    assert 0.0 < ours[0] < ours[1]
    np.testing.assert_allclose(np.asarray(metric(x, x)), [0.0, 0.0], atol=1e-6)


def test_lpips_loader_names_the_mismatch(tmp_path):
    backbone, linear = make_weights("alex", seed=0)
    backbone_path = save(tmp_path / "alex.pth", backbone, "pth")
    del linear["lin4.model.1.weight"]
    linear["lin3.model.1.weight"] = linear["lin3.model.1.weight"][:, :128]
    linear_path = save(tmp_path / "lin.safetensors", linear, "safetensors")
    with pytest.raises(WeightLayoutError, match=r"lin4\.model\.1\.weight") as info:
        load_lpips("alex", backbone_path, linear_path)
    assert "lin.safetensors" in str(info.value)
    assert "lin3.model.1.weight (1, 128, 1, 1) (expected (1, 256, 1, 1))" in str(info.value)
    # VGG16 weights given for AlexNet: the backbone file is named with its differences.
    vgg_backbone, _ = make_weights("vgg", seed=0)
    vgg_path = save(tmp_path / "vgg16.safetensors", vgg_backbone, "safetensors")
    with pytest.raises(WeightLayoutError, match=r"vgg16\.safetensors: does not match"):
        load_lpips("alex", vgg_path, linear_path)
    with pytest.raises(ValueError, match="lpips net: expected one of"):
        load_lpips("squeeze", backbone_path, linear_path)
