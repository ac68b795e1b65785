"""FID Inception-v3: the full pytorch-fid key layout, loading, and a torch.nn.functional reference.

The numeric check runs a narrow copy (width 1/8) of the network on a state dict the test saves
in pytorch-fid's key names; the full-width layout is checked abstractly with `nnx.eval_shape`.
"""

import numpy as np
import pytest
from flax import nnx

from anchored_jax.evaluation.inception_v3 import (
    InceptionV3Features,
    load_inception,
    load_inception_weights,
)
from anchored_jax.evaluation.torch_layout_layers import resize_bilinear, torch_layout
from anchored_jax.interop.weight_files import WeightLayoutError

torch = pytest.importorskip("torch")
F = torch.nn.functional

WIDTH = 0.125


def test_full_layout_is_pytorch_fids():
    layout = torch_layout(nnx.eval_shape(lambda: InceptionV3Features()))
    # 94 BasicConv2d (stem 5, 3 x A 7, B 4, 4 x C 10, D 6, 2 x E 9), 5 arrays each.
    assert len(layout) == 94 * 5
    assert sum(k.endswith(".conv.weight") for k in layout) == 94
    # torchvision's Inception3 without aux head has 23,834,568 parameters; less its
    # 2048x1000 classifier that leaves 21,785,568 (running statistics are buffers).
    params = sum(int(np.prod(s)) for k, s in layout.items() if ".running_" not in k)
    assert params == 21_785_568
    assert layout["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert layout["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert layout["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert layout["Mixed_7a.branch3x3_2.conv.weight"] == (320, 192, 3, 3)
    assert layout["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert layout["Mixed_7c.branch_pool.bn.running_var"] == (192,)


def random_state_dict(seed: int, width: float = WIDTH) -> dict:
    """Random weights in the layout of a narrow model, with the extras the real file holds."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    model = InceptionV3Features(width=width)
    for key, shape in torch_layout(model).items():
        if key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            value = 0.5 + torch.rand(shape, generator=gen)
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        state[key] = value
        if key.endswith("bn.running_var"):
            state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    state["fc.weight"] = torch.randn(1008, model.feature_dim, generator=gen)
    state["fc.bias"] = torch.zeros(1008)
    return state


# ---- torch.nn.functional reference, written from pytorch-fid's / torchvision's forward ----


def basic_conv(sd, name, x, stride=1, padding=0):
    x = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
    bn = [sd[f"{name}.bn.{k}"] for k in ("running_mean", "running_var", "weight", "bias")]
    return F.relu(F.batch_norm(x, *bn, training=False, eps=1e-3))


def avg_pool_fid(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def ref_stem(sd, x):
    x = basic_conv(sd, "Conv2d_1a_3x3", x, stride=2)
    x = basic_conv(sd, "Conv2d_2a_3x3", x)
    x = F.max_pool2d(basic_conv(sd, "Conv2d_2b_3x3", x, padding=1), 3, stride=2)
    x = basic_conv(sd, "Conv2d_4a_3x3", basic_conv(sd, "Conv2d_3b_1x1", x))
    return F.max_pool2d(x, 3, stride=2)


def ref_a(sd, m, x):
    b5 = basic_conv(sd, f"{m}.branch5x5_2", basic_conv(sd, f"{m}.branch5x5_1", x), padding=2)
    d = basic_conv(sd, f"{m}.branch3x3dbl_1", x)
    d = basic_conv(sd, f"{m}.branch3x3dbl_2", d, padding=1)
    d = basic_conv(sd, f"{m}.branch3x3dbl_3", d, padding=1)
    pool = basic_conv(sd, f"{m}.branch_pool", avg_pool_fid(x))
    return torch.cat([basic_conv(sd, f"{m}.branch1x1", x), b5, d, pool], 1)


def ref_b(sd, m, x):
    d = basic_conv(sd, f"{m}.branch3x3dbl_1", x)
    d = basic_conv(sd, f"{m}.branch3x3dbl_2", d, padding=1)
    d = basic_conv(sd, f"{m}.branch3x3dbl_3", d, stride=2)
    b3 = basic_conv(sd, f"{m}.branch3x3", x, stride=2)
    return torch.cat([b3, d, F.max_pool2d(x, 3, stride=2)], 1)


def ref_c(sd, m, x):
    b7 = basic_conv(sd, f"{m}.branch7x7_1", x)
    b7 = basic_conv(sd, f"{m}.branch7x7_2", b7, padding=(0, 3))
    b7 = basic_conv(sd, f"{m}.branch7x7_3", b7, padding=(3, 0))
    d = basic_conv(sd, f"{m}.branch7x7dbl_1", x)
    for i, pad in zip((2, 3, 4, 5), ((3, 0), (0, 3), (3, 0), (0, 3)), strict=True):
        d = basic_conv(sd, f"{m}.branch7x7dbl_{i}", d, padding=pad)
    pool = basic_conv(sd, f"{m}.branch_pool", avg_pool_fid(x))
    return torch.cat([basic_conv(sd, f"{m}.branch1x1", x), b7, d, pool], 1)


def ref_d(sd, m, x):
    b3 = basic_conv(sd, f"{m}.branch3x3_2", basic_conv(sd, f"{m}.branch3x3_1", x), stride=2)
    b7 = basic_conv(sd, f"{m}.branch7x7x3_1", x)
    b7 = basic_conv(sd, f"{m}.branch7x7x3_2", b7, padding=(0, 3))
    b7 = basic_conv(sd, f"{m}.branch7x7x3_3", b7, padding=(3, 0))
    b7 = basic_conv(sd, f"{m}.branch7x7x3_4", b7, stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


def ref_e(sd, m, x, pool_kind):
    b3 = basic_conv(sd, f"{m}.branch3x3_1", x)
    b3a = basic_conv(sd, f"{m}.branch3x3_2a", b3, padding=(0, 1))
    b3b = basic_conv(sd, f"{m}.branch3x3_2b", b3, padding=(1, 0))
    d = basic_conv(sd, f"{m}.branch3x3dbl_2", basic_conv(sd, f"{m}.branch3x3dbl_1", x), padding=1)
    da = basic_conv(sd, f"{m}.branch3x3dbl_3a", d, padding=(0, 1))
    db = basic_conv(sd, f"{m}.branch3x3dbl_3b", d, padding=(1, 0))
    if pool_kind == "max":  # FIDInceptionE_2
        pooled = F.max_pool2d(x, 3, stride=1, padding=1)
    else:  # FIDInceptionE_1
        pooled = avg_pool_fid(x)
    pool = basic_conv(sd, f"{m}.branch_pool", pooled)
    return torch.cat([basic_conv(sd, f"{m}.branch1x1", x), b3a, b3b, da, db, pool], 1)


def ref_features(sd, images_nchw, size):
    x = F.interpolate(images_nchw, size=(size, size), mode="bilinear", align_corners=False)
    x = ref_stem(sd, x)
    for m in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = ref_a(sd, m, x)
    x = ref_b(sd, "Mixed_6a", x)
    for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = ref_c(sd, m, x)
    x = ref_d(sd, "Mixed_7a", x)
    x = ref_e(sd, "Mixed_7c", ref_e(sd, "Mixed_7b", x, "avg"), "max")
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def to_nhwc(t):
    return np.asarray(t.detach().numpy()).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    state = random_state_dict(0)
    path = str(tmp_path_factory.mktemp("inception") / "pt_inception.pth")
    torch.save(state, path)
    return path, state


def test_stem_and_first_mixed_block_match_torch_reference(weights):
    path, sd = weights
    model = load_inception_weights(path, width=WIDTH)
    images = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 83, 83)).astype(np.float32)
    stem, mixed_5b = nnx.jit(lambda m, x: (m.stem(x), m.Mixed_5b(m.stem(x))))(
        model, images.transpose(0, 2, 3, 1)
    )
    ref_stem_out = ref_stem(sd, torch.from_numpy(images))
    np.testing.assert_allclose(stem, to_nhwc(ref_stem_out), rtol=1e-4, atol=1e-4)
    ref_mixed = ref_a(sd, "Mixed_5b", ref_stem_out)
    np.testing.assert_allclose(mixed_5b, to_nhwc(ref_mixed), rtol=1e-4, atol=1e-4)


def test_full_features_match_torch_reference(weights):
    path, sd = weights
    embed = load_inception(path, width=WIDTH, image_size=80)
    images = np.random.default_rng(1).uniform(-1, 1, size=(3, 3, 41, 57)).astype(np.float32)
    feats = np.asarray(embed(images.transpose(0, 2, 3, 1)))
    reference = ref_features(sd, torch.from_numpy(images), 80).numpy()
    assert feats.shape == (3, 256)
    assert np.abs(reference).mean() > 0.05
    np.testing.assert_allclose(feats, reference, rtol=1e-4, atol=1e-4)


def test_resize_is_torch_bilinear_without_antialias():
    images = np.random.default_rng(2).uniform(-1, 1, size=(2, 3, 100, 90)).astype(np.float32)
    for size in (75, 299):
        ours = resize_bilinear(images.transpose(0, 2, 3, 1), size)
        ref = F.interpolate(torch.from_numpy(images), (size, size), mode="bilinear")
        np.testing.assert_allclose(ours, to_nhwc(ref), atol=1e-5)


def test_layout_errors_are_one_line(weights, tmp_path):
    _, sd = weights
    missing = dict(sd)
    del missing["Mixed_6e.branch_pool.bn.running_var"]
    path = str(tmp_path / "missing.pth")
    torch.save(missing, path)
    with pytest.raises(WeightLayoutError) as error:
        load_inception_weights(path, width=WIDTH)
    assert str(error.value) == (
        f"{path}: does not match the model; 1 missing keys: Mixed_6e.branch_pool.bn.running_var"
    )
    wrong = dict(sd)
    wrong["Conv2d_1a_3x3.conv.weight"] = torch.zeros(4, 3, 5, 5)
    path = str(tmp_path / "wrong.pth")
    torch.save(wrong, path)
    with pytest.raises(WeightLayoutError, match=r"shapes differ: Conv2d_1a_3x3\.conv\.weight"):
        load_inception_weights(path, width=WIDTH)


@pytest.mark.slow
def test_full_network_at_299_matches_torch_reference(tmp_path):
    sd = random_state_dict(3, width=1.0)
    path = str(tmp_path / "pt_inception.pth")
    torch.save(sd, path)
    images = np.random.default_rng(3).uniform(-1, 1, size=(2, 3, 64, 96)).astype(np.float32)
    feats = np.asarray(load_inception(path)(images.transpose(0, 2, 3, 1)))
    reference = ref_features(sd, torch.from_numpy(images), 299).numpy()
    assert feats.shape == (2, 2048)
    np.testing.assert_allclose(feats, reference, rtol=1e-4, atol=1e-4)
