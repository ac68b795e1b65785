"""ArcFace IResNet: the full arcface_torch key layout, loading, a torch.nn.functional reference,
and CSIM/AED against their closed forms.

The numeric check runs a narrow iresnet18 (width 1/8) on a state dict the test saves in
arcface_torch's key names; the full-width iresnet18/50/100 layouts are compared key by key,
abstractly, with one written out here from arcface_torch's IResNet constructor.
"""

import numpy as np
import pytest
from flax import nnx

from anchored_jax.evaluation.identity_embedding import (
    IResNet,
    identity_similarity,
    load_identity_embedder,
    load_identity_weights,
)
from anchored_jax.evaluation.torch_layout_layers import torch_layout
from anchored_jax.interop.weight_files import WeightLayoutError

torch = pytest.importorskip("torch")
F = torch.nn.functional

WIDTH = 0.125
DEPTHS = {18: (2, 2, 2, 2), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}


def reference_layout(layers) -> dict[str, tuple[int, ...]]:
    layout = {}

    def bn(name, c):
        for stat in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.{stat}"] = (c,)

    layout["conv1.weight"] = (64, 3, 3, 3)
    bn("bn1", 64)
    layout["prelu.weight"] = (64,)
    c_in = 64
    for stage, (blocks, c) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
        for i in range(blocks):
            p = f"layer{stage + 1}.{i}"
            bn(f"{p}.bn1", c_in)
            layout[f"{p}.conv1.weight"] = (c, c_in, 3, 3)
            bn(f"{p}.bn2", c)
            layout[f"{p}.prelu.weight"] = (c,)
            layout[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn3", c)
            if i == 0:  # every stage starts with stride 2, so with a projection shortcut
                layout[f"{p}.downsample.0.weight"] = (c, c_in, 1, 1)
                bn(f"{p}.downsample.1", c)
            c_in = c
    bn("bn2", 512)
    layout["fc.weight"] = (512, 512 * 7 * 7)
    layout["fc.bias"] = (512,)
    bn("features", 512)
    return layout


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_full_layout_is_arcface_torchs(depth):
    layout = torch_layout(nnx.eval_shape(lambda: IResNet(layers=DEPTHS[depth])))
    assert layout == reference_layout(DEPTHS[depth])
    blocks = sum(DEPTHS[depth])
    # Per block 3 bn x 4 + 2 convs + prelu, plus 5 shortcut arrays per stage; stem 6, head 10.
    assert len(layout) == blocks * 15 + 4 * 5 + 6 + 10


def test_iresnet50_parameter_count():
    layout = torch_layout(nnx.eval_shape(lambda: IResNet(layers=DEPTHS[50])))
    params = sum(int(np.prod(s)) for k, s in layout.items() if ".running_" not in k)
    assert params == 43_590_848  # arcface_torch's iresnet50 (with the frozen features.weight)


def random_state_dict(seed: int, width: float = WIDTH, depth: int = 18) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torch_layout(IResNet(layers=DEPTHS[depth], width=width)).items():
        if len(shape) > 1:
            value = torch.randn(shape, generator=gen) * (1.0 / np.prod(shape[1:])) ** 0.5
        elif key.endswith(("running_var", ".weight")):
            value = 0.5 + torch.rand(shape, generator=gen)
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        if key.endswith("bn3.weight"):
            # A small residual branch, as in trained ResNets, keeps 24+ blocks from blowing
            # the activations up past where float32 comparisons at 1e-4 mean anything.
            value = 0.2 * value
        state[key] = value
        if key.endswith("running_var"):
            state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    # The random fc sums 49 x C inputs; a wide final variance brings the embedding to ~1.
    state["features.running_var"] = 20.0 + 10.0 * torch.rand(512, generator=gen)
    return state


# ---- torch.nn.functional reference, written from arcface_torch's forward ----


def bn(sd, name, x):
    stats = [sd[f"{name}.{s}"] for s in ("running_mean", "running_var", "weight", "bias")]
    return F.batch_norm(x, *stats, training=False, eps=1e-5)


def ref_stem(sd, x):
    return F.prelu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], padding=1)), sd["prelu.weight"])


def ref_block(sd, p, x, stride):
    y = F.conv2d(bn(sd, f"{p}.bn1", x), sd[f"{p}.conv1.weight"], padding=1)
    y = F.prelu(bn(sd, f"{p}.bn2", y), sd[f"{p}.prelu.weight"])
    y = bn(sd, f"{p}.bn3", F.conv2d(y, sd[f"{p}.conv2.weight"], stride=stride, padding=1))
    if f"{p}.downsample.0.weight" in sd:
        x = bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
    return y + x


def ref_embedding(sd, images_nchw, layers=DEPTHS[18]):
    x = F.interpolate(images_nchw, (112, 112), mode="bilinear", align_corners=False)
    x = ref_stem(sd, x)
    for stage, blocks in enumerate(layers):
        for i in range(blocks):
            x = ref_block(sd, f"layer{stage + 1}.{i}", x, 2 if i == 0 else 1)
    x = F.linear(bn(sd, "bn2", x).flatten(1), sd["fc.weight"], sd["fc.bias"])
    return F.batch_norm(
        x, sd["features.running_mean"], sd["features.running_var"],
        sd["features.weight"], sd["features.bias"], training=False, eps=1e-5,
    )  # fmt: skip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    state = random_state_dict(0)
    path = str(tmp_path_factory.mktemp("arcface") / "backbone.pth")
    torch.save(state, path)
    return path, state


def test_stem_and_first_block_match_torch_reference(weights):
    path, sd = weights
    model = load_identity_weights(path, depth=18, width=WIDTH)
    faces = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 112, 112)).astype(np.float32)
    stem, block = nnx.jit(lambda m, x: (m.stem(x), m.layer1[0](m.stem(x))))(
        model, faces.transpose(0, 2, 3, 1)
    )
    ref_stem_out = ref_stem(sd, torch.from_numpy(faces))
    np.testing.assert_allclose(stem, ref_stem_out.numpy().transpose(0, 2, 3, 1), atol=1e-4)
    ref_block_out = ref_block(sd, "layer1.0", ref_stem_out, 2).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(block, ref_block_out, rtol=1e-4, atol=1e-4)


def test_embeddings_match_torch_reference(weights):
    path, sd = weights
    embed = load_identity_embedder(path, depth=18, width=WIDTH)
    faces = np.random.default_rng(1).uniform(-1, 1, size=(2, 3, 128, 100)).astype(np.float32)
    emb = np.asarray(embed(faces.transpose(0, 2, 3, 1)))
    reference = ref_embedding(sd, torch.from_numpy(faces)).numpy()
    assert emb.shape == (2, 512)
    assert np.abs(reference).mean() > 0.05
    np.testing.assert_allclose(emb, reference, rtol=1e-4, atol=1e-4)


def test_layout_errors_are_one_line(weights, tmp_path):
    path, sd = weights
    with pytest.raises(WeightLayoutError) as error:
        load_identity_weights(path, depth=50, width=WIDTH)  # an iresnet18 file
    assert "\n" not in str(error.value)
    assert "missing keys: layer1.2.bn1.bias" in str(error.value)
    wrong = dict(sd)
    wrong["layer2.0.prelu.weight"] = torch.zeros(3)
    path = str(tmp_path / "wrong.pth")
    torch.save(wrong, path)
    with pytest.raises(WeightLayoutError) as error:
        load_identity_weights(path, depth=18, width=WIDTH)
    assert str(error.value) == (
        f"{path}: does not match the model; 1 shapes differ: layer2.0.prelu.weight (3,) "
        "(expected (16,))"
    )
    with pytest.raises(ValueError, match=r"^iresnet depth: expected one of \[18, 34, 50, 100\]"):
        load_identity_weights(path, depth=26)


def test_identity_similarity_closed_forms():
    e = np.eye(4)
    same = identity_similarity(3.0 * e, e)  # scale does not matter
    assert same["csim"] == pytest.approx(1.0, abs=1e-12)
    assert same["aed"] == pytest.approx(0.0, abs=1e-12)
    orthogonal = identity_similarity(e, np.roll(e, 1, axis=0))
    assert orthogonal["csim"] == pytest.approx(0.0, abs=1e-12)
    assert orthogonal["aed"] == pytest.approx(np.sqrt(2.0), rel=1e-12)
    opposite = identity_similarity(e, -2.0 * e)
    assert (opposite["csim"], opposite["aed"]) == pytest.approx((-1.0, 2.0), rel=1e-12)
    # One pair at 60 degrees: cos = 1/2 and the chord between unit vectors is 1.
    pair = identity_similarity([[1.0, 0.0]], [[0.5, np.sqrt(3) / 2]])
    assert (pair["csim"], pair["aed"]) == pytest.approx((0.5, 1.0), rel=1e-12)
    # Means over pairs, with AED^2 = 2 - 2 CSIM holding pair by pair.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16))
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    result = identity_similarity(a, b)
    assert result["csim"] == pytest.approx(cos.mean(), rel=1e-12)
    assert result["aed"] == pytest.approx(np.sqrt(2 - 2 * cos).mean(), rel=1e-12)
    with pytest.raises(ValueError, match=r"^identity embeddings: expected two \[N, D\] arrays"):
        identity_similarity(np.zeros((2, 4)), np.zeros((3, 4)))


@pytest.mark.slow
def test_full_iresnet50_matches_torch_reference(tmp_path):
    sd = random_state_dict(3, width=1.0, depth=50)
    path = str(tmp_path / "backbone.pth")
    torch.save(sd, path)
    faces = np.random.default_rng(3).uniform(-1, 1, size=(2, 3, 112, 112)).astype(np.float32)
    emb = np.asarray(load_identity_embedder(path, depth=50)(faces.transpose(0, 2, 3, 1)))
    reference = ref_embedding(sd, torch.from_numpy(faces), DEPTHS[50]).numpy()
    np.testing.assert_allclose(emb, reference, rtol=1e-4, atol=1e-4)
