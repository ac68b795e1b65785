"""DiT import: one-frame parity with an independent DiT forward, safe loading, layout errors."""

import argparse

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from anchored_jax.interop.dit_import import (
    dit_parity_overrides,
    import_dit_weights,
    load_dit_checkpoint,
)
from anchored_jax.interop.weight_files import WeightLayoutError
from tests.interop.dit_reference import dit_forward, random_dit_state_dict
from tests.models.sdit_testing import new_model, small_config

CLASSES = 10
DIT_SHAPE = dict(image_size=8, patch_size=2, in_channels=4, width=32, depth=2, num_heads=4)


def parity_config(**overrides):
    return small_config(**DIT_SHAPE, **dit_parity_overrides(CLASSES), **overrides)


@nnx.jit
def _one_frame(model, x_BHWC, t_B, labels_B, drop_B):
    out = model(x_BHWC[:, None], t_B[:, None], None, None, labels_B, drop_identity_B=drop_B)
    return out[:, 0]


def _inputs(seed=0, batch=4):
    rng = np.random.default_rng(seed)
    x_BHWC = rng.standard_normal((batch, 8, 8, 4)).astype(np.float32)
    t_B = np.array([0, 17, 500, 999][:batch], np.int32)
    labels_B = rng.integers(0, CLASSES, batch).astype(np.int32)
    return x_BHWC, t_B, labels_B


def _rel(ours, ref) -> float:
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("scan_layers", [True, False], ids=["scanned", "loop"])
def test_one_frame_sdit_computes_dit(scan_layers):
    pytest.importorskip("torch")
    sd = random_dit_state_dict(classes=CLASSES, seed=1)
    model = new_model(parity_config(out_channels=8, scan_layers=scan_layers), seed=5)
    report = import_dit_weights(model, sd)
    assert report.kept == () and not report.epsilon_half

    x_BHWC, t_B, labels_B = _inputs()
    drop_B = np.array([False, False, True, False])  # one row takes DiT's null label
    ours = np.asarray(_one_frame(model, x_BHWC, t_B, labels_B, drop_B))
    dit_labels = np.where(drop_B, CLASSES, labels_B)
    ref = np.transpose(
        dit_forward(sd, np.transpose(x_BHWC, (0, 3, 1, 2)).astype(np.float64), t_B, dit_labels, 4),
        (0, 2, 3, 1),
    )
    assert ours.shape == ref.shape == (4, 8, 8, 8)
    assert _rel(ours, ref) < 1e-4, _rel(ours, ref)
    # The labels matter: another class gives a visibly different output.
    other = np.asarray(_one_frame(model, x_BHWC, t_B, (labels_B + 1) % CLASSES, drop_B))
    assert _rel(other, ref) > 1e-2


def test_learn_sigma_head_is_cut_to_epsilon_from_a_pt_file(tmp_path):
    torch = pytest.importorskip("torch")
    sd = random_dit_state_dict(classes=CLASSES, seed=2)
    path = str(tmp_path / "DiT-random.pt")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    model = new_model(parity_config(), seed=6)  # out_channels 0 -> 4, DiT has 8
    report = import_dit_weights(model, load_dit_checkpoint(path), path)
    assert report.epsilon_half
    x_BHWC, t_B, labels_B = _inputs(seed=3)
    drop_B = np.zeros(4, bool)
    ours = np.asarray(_one_frame(model, x_BHWC, t_B, labels_B, drop_B))
    ref = dit_forward(sd, np.transpose(x_BHWC, (0, 3, 1, 2)).astype(np.float64), t_B, labels_B, 4)
    ref_eps = np.transpose(ref[:, :4], (0, 2, 3, 1))
    assert _rel(ours, ref_eps) < 1e-4, _rel(ours, ref_eps)


def test_training_checkpoint_ema_entry_and_safetensors_load_the_same(tmp_path):
    torch = pytest.importorskip("torch")
    sd = random_dit_state_dict(classes=CLASSES, seed=3)
    save_file(sd, str(tmp_path / "dit.safetensors"))
    zeros = {k: torch.zeros(v.shape) for k, v in sd.items()}
    torch.save(
        {"model": zeros, "ema": {k: torch.from_numpy(v) for k, v in sd.items()}},
        str(tmp_path / "train.pt"),
    )
    a = load_dit_checkpoint(str(tmp_path / "dit.safetensors"))
    b = load_dit_checkpoint(str(tmp_path / "train.pt"))
    assert sorted(a) == sorted(b) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(a[k], b[k])


def test_pickled_objects_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "with_args.pt")
    torch.save({"ema": {}, "args": argparse.Namespace(model="DiT-XL/2")}, path)
    with pytest.raises(ValueError, match="weights_only=True refused it"):
        load_dit_checkpoint(path)


def test_default_config_imports_the_trunk_and_keeps_our_conditioning():
    sd = random_dit_state_dict(classes=CLASSES, seed=4)
    model = new_model(small_config(**DIT_SHAPE), seed=7)
    before = {
        "/".join(map(str, p)): np.asarray(v[...])
        for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }
    report = import_dit_weights(model, sd)
    assert report.skipped_keys == ("y_embedder.embedding_table.weight",)
    kept_roots = {name.split("/")[0] for name in report.kept}
    assert kept_roots == {
        "frame_time_embedder",
        "landmark_embedder",
        "identity_embedder",
        "null_identity",
        "null_landmarks",
    }
    after = {
        "/".join(map(str, p)): np.asarray(v[...])
        for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }
    for name in report.kept:
        np.testing.assert_array_equal(after[name], before[name])
    qkv = after["blocks/attn/qkv_kernel"]
    np.testing.assert_array_equal(qkv[1].reshape(32, 96), sd["blocks.1.attn.qkv.weight"].T)


def test_wrong_size_checkpoint_lists_what_differs():
    sd = random_dit_state_dict(classes=CLASSES, depth=3, width=48, seed=5)
    del sd["t_embedder.mlp.0.bias"]
    model = new_model(parity_config(), seed=8)
    with pytest.raises(WeightLayoutError) as err:
        import_dit_weights(model, sd, "DiT-S.pt")
    message = str(err.value)
    assert message.startswith("DiT-S.pt: does not match the model;")
    assert "1 missing keys: t_embedder.mlp.0.bias" in message
    assert "unexpected keys: blocks.2.adaLN_modulation.1.bias" in message
    assert "blocks.0.adaLN_modulation.1.bias (288,) (expected (192,))" in message
    assert message.endswith(
        "(the checkpoint has width 48, depth 3, patch 2, 4 input channels; "
        "the config has width 32, depth 2, patch 2, 4 input channels)"
    )
    assert "\n" not in message


def test_other_grid_is_caught_by_the_position_table():
    sd = random_dit_state_dict(classes=CLASSES, seed=6)
    # Same shape, other positions: a table built for another grid or ordering.
    sd["pos_embed"] = np.roll(sd["pos_embed"], 1, axis=1)
    model = new_model(parity_config(), seed=9)
    with pytest.raises(WeightLayoutError, match="pos_embed differs from the sin-cos grid"):
        import_dit_weights(model, sd)
