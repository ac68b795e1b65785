"""The segment planner: every frame owned exactly once, anchors shared, padding masked."""

import numpy as np
import pytest

from anchored_jax.sampling.segment_plan import PLAN_KINDS, plan_segments

# T < K, T = 1 + m (K-1) (no padding), ragged T, T = 1 and 2, and long videos.
CASES = [
    (T, K)
    for K in (2, 3, 4, 8)
    for T in (1, 2, K - 1, K, K + 1, 1 + 3 * (K - 1), 2 + 3 * (K - 1), 37, 256, 1025)
    if T >= 1
]


@pytest.mark.parametrize("kind", PLAN_KINDS)
@pytest.mark.parametrize("T,K", CASES)
def test_plan_covers_every_frame_exactly_once(kind, T, K):
    for anchor in sorted({0, T // 2, T - 1}):
        plan = plan_segments(T, K, anchor, kind, seed=3)
        S = plan.num_segments
        assert plan.frame_index_SK.shape == (S, K)
        assert S == max(1, -(-(T - 1) // (K - 1)))
        # Slot 0 is the anchor everywhere and never owns an output frame.
        assert np.all(plan.frame_index_SK[:, 0] == anchor)
        assert not plan.owned_SK[:, 0].any()
        owned = plan.frame_index_SK[plan.owned_SK]
        counts = np.bincount(owned, minlength=T)
        expected = np.ones(T, int)
        expected[anchor] = 0
        np.testing.assert_array_equal(counts, expected)
        # Strided/random spread the padding evenly; contiguous leaves it in the last segment.
        pad_S = (~plan.owned_SK[:, 1:]).sum(axis=1)
        assert pad_S.sum() == S * (K - 1) - (T - 1)
        if kind == "contiguous":
            assert pad_S[:-1].sum() == 0
        else:
            assert pad_S.max() - pad_S.min() <= 1
        # Padded slots repeat a frame that the segment really holds (valid conditioning).
        for s in range(S):
            real = set(plan.frame_index_SK[s][plan.frame_mask_SK[s]].tolist())
            assert set(plan.frame_index_SK[s].tolist()) <= real


def test_scatter_round_trips_a_video_in_time_order():
    T, K = 23, 4
    video_T = np.arange(T, dtype=np.float32) * 10.0
    for kind in PLAN_KINDS:
        plan = plan_segments(T, K, anchor=5, kind=kind, seed=1)
        segments_SK = video_T[plan.frame_index_SK]
        segments_SK[~plan.frame_mask_SK] = -1.0  # padding must never reach the output
        np.testing.assert_array_equal(plan.scatter(segments_SK, video_T[5]), video_T)


def test_plan_kinds_differ_as_documented():
    T, K = 13, 4
    contiguous = plan_segments(T, K, 0, "contiguous")
    np.testing.assert_array_equal(contiguous.frame_index_SK[:, 1:], np.arange(1, 13).reshape(4, 3))
    strided = plan_segments(T, K, 0, "strided")
    np.testing.assert_array_equal(strided.frame_index_SK[0], [0, 1, 5, 9])
    # Every strided segment spans (nearly) the whole video.
    assert np.all(strided.frame_index_SK[:, 1:].max(1) - strided.frame_index_SK[:, 1:].min(1) >= 8)
    r1, r2 = plan_segments(T, K, 0, "random", seed=1), plan_segments(T, K, 0, "random", seed=1)
    np.testing.assert_array_equal(r1.frame_index_SK, r2.frame_index_SK)
    r3 = plan_segments(T, K, 0, "random", seed=2)
    assert not np.array_equal(r1.frame_index_SK, r3.frame_index_SK)
    # Random segments are sorted in time and non-uniformly spaced.
    assert np.all(np.diff(r1.frame_index_SK[:, 1:], axis=1) > 0)
    gaps = np.diff(r1.frame_index_SK[:, 1:], axis=1)
    assert len(np.unique(gaps)) > 1


@pytest.mark.parametrize(
    "args,match",
    [
        ((0, 4, 0, "contiguous"), "sampling.num_frames"),
        ((10, 1, 0, "contiguous"), "sampling.frames_per_segment"),
        ((10, 4, 10, "contiguous"), "sampling.anchor"),
        ((10, 4, 0, "zigzag"), "sampling.plan"),
    ],
)
def test_bad_plan_arguments_name_the_field(args, match):
    with pytest.raises(ValueError, match=match):
        plan_segments(*args)
