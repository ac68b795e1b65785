"""Seam ratio and spread between segments on hand-made videos whose answers are known."""

import numpy as np
import pytest

from anchored_jax.evaluation.segment_metrics import (
    ANCHOR_OWNER,
    face_boxes_px_T4,
    join_masks,
    pooled_seam_ratio,
    region_means_T23,
    seam_ratio,
    segment_owner_T,
    segment_spread,
)
from anchored_jax.sampling.segment_plan import plan_segments

T, K, SIZE = 25, 5, 16  # 24 frames after the anchor: 6 segments of 4


def _landmarks(T, box=(0.25, 0.75)):
    """Four landmarks at the corners of the box [lo, hi]^2 in every frame."""
    lo, hi = box
    corners = np.array([[lo, lo, 0], [hi, lo, 0], [lo, hi, 0], [hi, hi, 0]], np.float64)
    return np.tile(corners, (T, 1, 1))


def test_owner_marks_every_frame_once_and_the_anchor_as_none():
    for kind in ("contiguous", "strided", "random"):
        plan = plan_segments(T, K, 0, kind, seed=3)
        owner = segment_owner_T(plan)
        assert owner[0] == ANCHOR_OWNER and (owner[1:] >= 0).all()
        assert np.bincount(owner[1:]).tolist() == [K - 1] * plan.num_segments
    owner = segment_owner_T(plan_segments(T, K, 0, "contiguous"))
    np.testing.assert_array_equal(owner[1:], np.repeat(np.arange(6), 4))
    join, within = join_masks(owner)
    assert join.sum() == 5 and within.sum() == 18  # pair (0, 1) touches the anchor: neither
    assert not join[0] and not within[0]


def test_a_smooth_video_has_seam_ratio_one_on_every_plan():
    ramp = np.linspace(-0.9, 0.9, T)[:, None, None, None] * np.ones((T, SIZE, SIZE, 3))
    for kind in ("contiguous", "random"):
        owner = segment_owner_T(plan_segments(T, K, 0, kind, seed=0))
        np.testing.assert_allclose(seam_ratio(ramp, owner), 1.0, rtol=1e-12)
    # Strided: every neighbouring pair is a join, so there is nothing to divide by.
    assert seam_ratio(ramp, segment_owner_T(plan_segments(T, K, 0, "strided"))) is None


def test_segments_of_different_colours_give_a_known_seam_ratio_and_spread():
    owner = segment_owner_T(plan_segments(T, K, 0, "contiguous"))
    colours = np.array([0.0, 0.5, -0.2, 0.3, 0.1, -0.4])  # one grey level per segment
    step = 0.01  # and a slow ramp, so the change within segments is known and nonzero
    level_T = np.concatenate([[0.0], colours[owner[1:]]]) + step * np.arange(T)
    video = level_T[:, None, None, None] * np.ones((T, SIZE, SIZE, 3))
    joins = np.abs(np.diff(colours) + step)  # each join: the colour jump plus one ramp step
    np.testing.assert_allclose(seam_ratio(video, owner), joins.mean() / step, rtol=1e-9)
    assert seam_ratio(video, owner) > 10

    # Constant colours: each segment's mean is its colour, in both regions.
    flat = np.concatenate([[0.0], colours[owner[1:]]])[:, None, None, None]
    flat = flat * np.ones((T, SIZE, SIZE, 3))
    spread = segment_spread(flat, _landmarks(T), owner)
    for key in ("spread", "spread_face", "spread_background"):
        np.testing.assert_allclose(spread[key], np.std(colours), rtol=1e-12)


def test_spread_separates_face_and_background_and_skips_the_margin():
    owner = segment_owner_T(plan_segments(T, K, 0, "contiguous"))
    y0, y1, x0, x1 = face_boxes_px_T4(_landmarks(1), SIZE, SIZE)[0]
    assert (y0, y1, x0, x1) == (4, 12, 4, 12)
    face_levels = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    video = np.zeros((T, SIZE, SIZE, 3))
    video[:, 2:14, 2:14] = 5.0  # the 2-pixel margin around the box: in neither region
    for t in range(1, T):
        video[t, y0:y1, x0:x1] = face_levels[owner[t]]
    means = region_means_T23(video, _landmarks(T))
    np.testing.assert_allclose(means[1:, 1], 0.0)  # background: the margin is left out
    spread = segment_spread(video, _landmarks(T), owner)
    np.testing.assert_allclose(spread["spread_face"], np.std(face_levels), rtol=1e-12)
    assert spread["spread_background"] == 0.0
    np.testing.assert_allclose(spread["spread"], np.std(face_levels) / 2, rtol=1e-12)


def test_pooling_clips_and_undefined_cases():
    owner = segment_owner_T(plan_segments(9, 5, 0, "contiguous"))  # 2 segments of 4
    change_a = np.array([9.0, 1, 1, 1, 4, 1, 1, 1])  # pair (0,1) ignored; join change 4
    change_b = np.array([9.0, 2, 2, 2, 2, 2, 2, 2])
    pooled = pooled_seam_ratio([change_a, change_b], [owner, owner])
    assert pooled["join_pairs"] == 2 and pooled["within_pairs"] == 12
    np.testing.assert_allclose(pooled["seam_ratio"], (6 / 2) / (18 / 12))
    one_segment = segment_owner_T(plan_segments(5, 5, 0, "contiguous"))
    video = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3))
    assert seam_ratio(video, one_segment) is None  # no joins
    assert segment_spread(video, _landmarks(5), one_segment)["spread"] is None


def test_landmarks_with_missing_points_and_bad_shapes():
    lm = _landmarks(2)
    lm[0, 0] = np.nan  # one point missing: the box comes from the other three
    lm[1] = np.nan  # no face at all: empty box, everything is background
    boxes = face_boxes_px_T4(lm, SIZE, SIZE)
    assert tuple(boxes[0]) == (4, 12, 4, 12) and boxes[1][0] == boxes[1][1]
    means = region_means_T23(np.ones((2, SIZE, SIZE, 3)), lm)
    assert np.isnan(means[1, 0]).all() and (means[1, 1] == 1).all()
    with pytest.raises(ValueError, match="landmarks: expected 3 frames, got 2"):
        region_means_T23(np.ones((3, SIZE, SIZE, 3)), lm)
