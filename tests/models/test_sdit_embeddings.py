"""Embeddings and attention pieces of the sDiT, checked against their defining formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.models.attention import dot_product_attention, group_frames, ungroup_frames
from anchored_jax.models.embeddings import (
    frame_time_features,
    normalise_landmarks,
    rasterise_landmarks,
    sincos_2d_positions,
    timestep_features,
)


def test_2d_positions_follow_dit_layout():
    pos_ND = sincos_2d_positions(embed_dim=16, grid_size=3)
    assert pos_ND.shape == (9, 16)
    # Patch (0, 0): sin 0 = 0 and cos 0 = 1 in both halves.
    np.testing.assert_allclose(pos_ND[0], np.tile(np.repeat([0.0, 1.0], 4), 2), atol=1e-7)
    # Row-major tokens; the first half encodes the column, the second half the row.
    right, down = pos_ND[1], pos_ND[3]
    np.testing.assert_array_equal(right[8:], pos_ND[0][8:])
    np.testing.assert_array_equal(down[:8], pos_ND[0][:8])
    np.testing.assert_allclose(right[0], np.sin(1.0), atol=1e-7)  # column 1, top frequency


def test_timestep_features_are_dits_sinusoid():
    feats = np.asarray(timestep_features(jnp.array([0.0, 500.0])))
    assert feats.shape == (2, 256)
    np.testing.assert_allclose(feats[0], np.r_[np.ones(128), np.zeros(128)], atol=1e-7)
    np.testing.assert_allclose(feats[1, [0, 128]], [np.cos(500.0), np.sin(500.0)], atol=1e-4)


def test_frame_time_features_are_continuous_signed_and_distinct():
    period = 10.0
    taus = jnp.linspace(-4.9, 4.9, 99)
    feats = np.asarray(frame_time_features(taus, period))
    # Nearby times are close, distinct times inside the period are far apart.
    near = np.asarray(frame_time_features(taus + 1e-4, period))
    assert np.abs(near - feats).max() < 0.1
    dists = np.linalg.norm(feats[:, None] - feats[None], axis=-1) + np.eye(99) * 1e9
    assert dists.min() > 0.5
    # Sign matters; the slowest pair turns once per period.
    assert np.abs(feats[0] - feats[-1]).max() > 0.5
    slowest = np.asarray(frame_time_features(jnp.array([0.0, period]), period))
    np.testing.assert_allclose(slowest[0, [0, 128]], slowest[1, [0, 128]], atol=1e-5)


def test_landmark_normalisation_separates_shape_from_pose():
    rng = np.random.default_rng(0)
    lm = rng.standard_normal((1, 2, 7, 3)).astype(np.float32)
    moved = lm * 3.0 + np.array([5.0, -2.0, 1.0], np.float32)
    a, b = np.asarray(normalise_landmarks(lm)), np.asarray(normalise_landmarks(moved))
    assert a.shape == (1, 2, 7 * 3 + 3 + 1)
    np.testing.assert_allclose(a[..., :21], b[..., :21], atol=1e-5)  # shape part invariant
    shift = [[[5.0, -2.0, 1.0]] * 2]  # the centre moves with the affine map
    np.testing.assert_allclose(b[..., 21:24] - 3.0 * a[..., 21:24], shift, atol=1e-5)
    np.testing.assert_allclose(b[..., 24] - a[..., 24], np.log(3.0), atol=1e-5)
    assert np.all(np.isfinite(np.asarray(normalise_landmarks(np.zeros((1, 1, 7, 3))))))


def test_masked_attention_equals_attention_over_real_keys():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 5, 3, 4)).astype(np.float32) for _ in range(3))
    mask = np.array([[True, False, True, True, False], [True] * 5])
    out = np.asarray(dot_product_attention(q, k, v, mask))
    keep = mask[0]
    ref0 = np.asarray(dot_product_attention(q[:1], k[:1, keep], v[:1, keep]))
    np.testing.assert_allclose(out[:1], ref0, atol=1e-6)
    # Plain softmax formula for the unmasked example.
    logits = np.einsum("thd,shd->hts", q[1], k[1]) / 2.0
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(out[1], np.einsum("hts,shd->thd", probs, v[1]), atol=1e-5)
    with pytest.raises(ValueError, match="model.attention_backend"):
        dot_product_attention(q, k, v, backend="flash")


@pytest.mark.parametrize("axis", ["spatial", "temporal"])
def test_frame_grouping_round_trips(axis):
    x_BLD = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 12, 5)
    grouped = group_frames(x_BLD, num_frames=3, axis=axis)
    assert grouped.shape == ((6, 4, 5) if axis == "spatial" else (8, 3, 5))
    np.testing.assert_array_equal(ungroup_frames(grouped, 2, axis), x_BLD)
    if axis == "temporal":  # sequence 0 = patch 0 of every frame of example 0
        np.testing.assert_array_equal(grouped[0], x_BLD[0, ::4])


def test_cudnn_backend_is_reachable_only_through_the_dispatcher():
    if jax.default_backend() != "gpu":
        pytest.skip("cuDNN attention needs a GPU")
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 8, 2, 16)), jnp.bfloat16) for _ in range(3))
    mask = jnp.array([[True] * 6 + [False] * 2] * 2)
    ref = dot_product_attention(q, k, v, mask)
    out = dot_product_attention(q, k, v, mask, backend="cudnn")
    np.testing.assert_allclose(np.float32(out), np.float32(ref), atol=3e-2)


def test_landmark_map_puts_a_unit_gaussian_at_each_point():
    size, sigma = 16, 1.0
    # Two points, at pixel centres (3, 5) and (10, 12) as (x, y).
    points = np.array([[[[3.5 / size, 5.5 / size, 0.0], [10.5 / size, 12.5 / size, 0.3]]]])
    heat = np.asarray(rasterise_landmarks(jnp.asarray(points, jnp.float32), size, sigma))
    assert heat.shape == (1, 1, size, size, 1)
    ys, xs = np.mgrid[0:size, 0:size]
    expected = sum(
        np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in ((3, 5), (10, 12))
    )
    np.testing.assert_allclose(heat[0, 0, :, :, 0], expected, atol=1e-6)
    assert heat[0, 0, 5, 3, 0] == pytest.approx(1.0, abs=1e-4)  # the peak sits on the point
