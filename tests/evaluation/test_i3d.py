"""FVD's I3D: the full pytorch-i3d key layout, loading, and a torch.nn.functional reference.

The numeric check runs a narrow copy (width 1/8) on a state dict the test saves in
pytorch-i3d's key names; the full-width layout is compared key by key, abstractly, with one
written out here from pytorch-i3d's InceptionI3d constructor.
"""

import numpy as np
import pytest
from flax import nnx

from anchored_jax.evaluation.i3d import InceptionI3d, load_i3d, load_i3d_weights
from anchored_jax.evaluation.torch_layout_layers import torch_layout
from anchored_jax.interop.weight_files import WeightLayoutError

torch = pytest.importorskip("torch")
F = torch.nn.functional

WIDTH = 0.125
# pytorch-i3d's modules: (in_channels, [b0, b1a, b1b, b2a, b2b, b3b]).
REFERENCE_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
BRANCHES = ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")


def reference_layout() -> dict[str, tuple[int, ...]]:
    layout = {}

    def unit(name, c_in, c_out, k):
        layout[f"{name}.conv3d.weight"] = (c_out, c_in, k, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{stat}"] = (c_out,)

    unit("Conv3d_1a_7x7", 3, 64, 7)
    unit("Conv3d_2b_1x1", 64, 64, 1)
    unit("Conv3d_2c_3x3", 64, 192, 3)
    for name, (c_in, (b0, b1a, b1b, b2a, b2b, b3b)) in REFERENCE_MIXED.items():
        unit(f"{name}.b0", c_in, b0, 1)
        unit(f"{name}.b1a", c_in, b1a, 1)
        unit(f"{name}.b1b", b1a, b1b, 3)
        unit(f"{name}.b2a", c_in, b2a, 1)
        unit(f"{name}.b2b", b2a, b2b, 3)
        unit(f"{name}.b3b", c_in, b3b, 1)
    layout["logits.conv3d.weight"] = (400, 1024, 1, 1, 1)
    layout["logits.conv3d.bias"] = (400,)
    return layout


def test_full_layout_is_pytorch_i3ds():
    layout = torch_layout(nnx.eval_shape(lambda: InceptionI3d()))
    # 3 stem units + 9 modules x 6 units, 5 arrays each, and the logits conv's weight and bias.
    assert len(layout) == (3 + 9 * 6) * 5 + 2
    assert layout == reference_layout()
    params = sum(int(np.prod(s)) for k, s in layout.items() if ".running_" not in k)
    assert params == 12_697_264


def random_state_dict(seed: int, width: float = WIDTH) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torch_layout(InceptionI3d(width=width)).items():
        if key.endswith("conv3d.weight"):
            fan_in = int(np.prod(shape[1:]))
            value = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            value = 0.5 + torch.rand(shape, generator=gen)
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        state[key] = value
    return state


# ---- torch.nn.functional reference, written from pytorch-i3d's forward ----


def same_pad(x, kernel, stride):
    """pytorch-i3d's compute_pad: TF SAME, the extra pixel at the end, zeros."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride, strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((total // 2, total - total // 2))
    (tf, tb), (hf, hb), (wf, wb) = pads
    return F.pad(x, (wf, wb, hf, hb, tf, tb))


def unit(sd, name, x, k=1, stride=1):
    x = F.conv3d(same_pad(x, (k,) * 3, (stride,) * 3), sd[f"{name}.conv3d.weight"], stride=stride)
    bn = [sd[f"{name}.bn.{s}"] for s in ("running_mean", "running_var", "weight", "bias")]
    return F.relu(F.batch_norm(x, *bn, training=False, eps=1e-3))


def max_pool_same(x, kernel, stride):
    return F.max_pool3d(same_pad(x, kernel, stride), kernel, stride)


def ref_stem(sd, x):
    x = max_pool_same(unit(sd, "Conv3d_1a_7x7", x, 7, 2), (1, 3, 3), (1, 2, 2))
    x = unit(sd, "Conv3d_2c_3x3", unit(sd, "Conv3d_2b_1x1", x), 3)
    return max_pool_same(x, (1, 3, 3), (1, 2, 2))


def ref_mixed(sd, m, x):
    b1 = unit(sd, f"{m}.b1b", unit(sd, f"{m}.b1a", x), 3)
    b2 = unit(sd, f"{m}.b2b", unit(sd, f"{m}.b2a", x), 3)
    b3 = unit(sd, f"{m}.b3b", max_pool_same(x, (3, 3, 3), (1, 1, 1)))
    return torch.cat([unit(sd, f"{m}.b0", x), b1, b2, b3], 1)


def ref_logits(sd, video_ncthw, size):
    n, c, t, h, w = video_ncthw.shape
    frames = video_ncthw.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    frames = F.interpolate(frames, (size, size), mode="bilinear", align_corners=False)
    x = ref_stem(sd, frames.reshape(n, t, c, size, size).permute(0, 2, 1, 3, 4))
    for m in REFERENCE_MIXED:
        if m == "Mixed_4b":
            x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        if m == "Mixed_5b":
            x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = ref_mixed(sd, m, x)
    x = F.avg_pool3d(x, (2, 7, 7), stride=1)
    x = F.conv3d(x, sd["logits.conv3d.weight"], sd["logits.conv3d.bias"])
    return x.squeeze(3).squeeze(3).mean(2)  # [N, 400, T'] averaged over time


def to_channels_last(t):
    return np.asarray(t.detach().numpy()).transpose(0, 2, 3, 4, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    state = random_state_dict(0)
    path = str(tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt")
    torch.save(state, path)
    return path, state


def test_stem_and_first_mixed_block_match_torch_reference(weights):
    path, sd = weights
    model = load_i3d_weights(path, width=WIDTH)
    # Odd sizes exercise the asymmetric SAME padding.
    video = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 7, 29, 35)).astype(np.float32)
    stem, mixed = nnx.jit(lambda m, x: (m.stem(x), m.Mixed_3b(m.stem(x))))(
        model, video.transpose(0, 2, 3, 4, 1)
    )
    ref_stem_out = ref_stem(sd, torch.from_numpy(video))
    np.testing.assert_allclose(stem, to_channels_last(ref_stem_out), rtol=1e-4, atol=1e-4)
    ref_mixed_out = ref_mixed(sd, "Mixed_3b", ref_stem_out)
    np.testing.assert_allclose(mixed, to_channels_last(ref_mixed_out), rtol=1e-4, atol=1e-4)


def test_logits_match_torch_reference(weights):
    path, sd = weights
    # 193x193 frames end Mixed_5c at 7x7, as 224 does; 18 frames leave two time steps to average.
    logits_fn = load_i3d(path, width=WIDTH, image_size=193)
    video = np.random.default_rng(1).uniform(-1, 1, size=(1, 3, 18, 20, 24)).astype(np.float32)
    logits = np.asarray(logits_fn(video.transpose(0, 2, 3, 4, 1)))
    reference = ref_logits(sd, torch.from_numpy(video), 193).numpy()
    assert logits.shape == (1, 400)
    assert np.abs(reference).mean() > 0.05
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)


def test_layout_errors_are_one_line(weights, tmp_path):
    _, sd = weights
    missing = {k: v for k, v in sd.items() if k != "logits.conv3d.bias"}
    path = str(tmp_path / "missing.pt")
    torch.save(missing, path)
    with pytest.raises(WeightLayoutError) as error:
        load_i3d_weights(path, width=WIDTH)
    assert (
        str(error.value) == f"{path}: does not match the model; 1 missing keys: logits.conv3d.bias"
    )
    wrong = dict(sd)
    wrong["Mixed_3b.b1b.conv3d.weight"] = torch.zeros(16, 12, 3, 3, 1)
    path = str(tmp_path / "wrong.pt")
    torch.save(wrong, path)
    with pytest.raises(WeightLayoutError, match=r"^\S+: does not match the model; 1 shapes differ"):
        load_i3d_weights(path, width=WIDTH)


@pytest.mark.slow
def test_full_network_at_224_matches_torch_reference(tmp_path):
    sd = random_state_dict(3, width=1.0)
    path = str(tmp_path / "rgb_imagenet.pt")
    torch.save(sd, path)
    video = np.random.default_rng(3).uniform(-1, 1, size=(1, 3, 16, 32, 40)).astype(np.float32)
    logits = np.asarray(load_i3d(path)(video.transpose(0, 2, 3, 4, 1)))
    reference = ref_logits(sd, torch.from_numpy(video), 224).numpy()
    assert logits.shape == (1, 400)
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
