"""Gap statistics of the clip samplers: each kind does what its name claims."""

import math

import numpy as np
import pytest

from data_pipelines.clip_sampling import SAMPLER_KINDS, clip_times, nonuniform_clip_indices

NUM_FRAMES, K, MIN_W, MAX_W = 64, 4, 6, 32


def _draws(kind, n=2000, seed=0, **kw):
    rng = np.random.default_rng(seed)
    args = dict(num_frames=NUM_FRAMES, clip_frames=K, min_window=MIN_W, max_window=MAX_W)
    args.update(kw)
    return np.stack(
        [
            nonuniform_clip_indices(
                rng,
                args["num_frames"],
                args["clip_frames"],
                kind,
                min_window=args["min_window"],
                max_window=args["max_window"],
            )
            for _ in range(n)
        ]
    )


@pytest.mark.parametrize("kind", SAMPLER_KINDS)
def test_every_kind_is_sorted_distinct_in_range_and_in_window(kind):
    idx = _draws(kind)
    assert idx.dtype == np.int32 and idx.shape == (2000, K)
    assert np.all(np.diff(idx, axis=1) >= 1)  # sorted and distinct
    assert idx.min() >= 0 and idx.max() < NUM_FRAMES
    span = idx[:, -1] - idx[:, 0] + 1
    assert span.max() <= MAX_W
    if kind != "random_subset":  # random_subset's window may end after its last drawn frame
        assert span.min() >= MIN_W
    # Starts cover the video: the sampler is not stuck at the beginning.
    assert idx[:, 0].min() == 0 and idx[:, -1].max() == NUM_FRAMES - 1


def test_uniform_stride_gaps_are_equal_within_a_clip_and_strides_vary():
    idx = _draws("uniform_stride")
    gaps = np.diff(idx, axis=1)
    assert np.all(gaps == gaps[:, :1])
    strides = set(gaps[:, 0].tolist())
    # Windows (K-1)s+1 in [6, 32] allow strides 2..10; all of them appear.
    assert strides == set(range(2, 11))


def test_random_subset_gaps_are_uneven_windows_vary_and_the_anchor_opens_the_window():
    rng = np.random.default_rng(1)
    idx = _draws("random_subset", seed=1)
    gaps = np.diff(idx, axis=1)
    unequal = np.mean(np.any(gaps != gaps[:, :1], axis=1))
    assert unequal > 0.8, unequal
    spans = idx[:, -1] - idx[:, 0] + 1
    assert spans.std() > 4 and len(np.unique(spans)) > 15
    # The window is drawn first, then K-1 frames inside it: with K=2 and a fixed window, the
    # second index is uniform over the rest of the window, and the first is the window start.
    rng = np.random.default_rng(2)
    pairs = np.stack(
        [
            nonuniform_clip_indices(rng, 10, 2, "random_subset", min_window=10, max_window=10)
            for _ in range(3000)
        ]
    )
    assert np.all(pairs[:, 0] == 0)  # window of 10 in a 10-frame video starts at 0
    counts = np.bincount(pairs[:, 1], minlength=10)[1:]
    assert counts.min() > 3000 / 9 * 0.8 and counts.max() < 3000 / 9 * 1.2


def test_loguniform_gaps_follow_the_discrete_loguniform_law():
    idx = _draws("loguniform_gaps", n=4000, min_window=1, max_window=31)
    gaps = np.diff(idx, axis=1).ravel()
    g_max = (31 - 1) // (K - 1)  # 10
    assert gaps.min() == 1 and gaps.max() == g_max
    # CDF of floor(exp(U[0, log(g_max + 1)))): P(gap <= g) = log(g + 1) / log(g_max + 1).
    g = np.arange(1, g_max + 1)
    expected_cdf = np.log(g + 1) / math.log(g_max + 1)
    empirical_cdf = np.array([(gaps <= x).mean() for x in g])
    assert np.abs(empirical_cdf - expected_cdf).max() < 0.02  # KS distance, n = 12000
    # log-gaps are spread like a uniform on a log scale: small gaps far commoner than large.
    assert (gaps == 1).mean() > 3 * (gaps == g_max).mean()
    # A uniform law over gaps would fail the same check.
    uniform_cdf = g / g_max
    assert np.abs(empirical_cdf - uniform_cdf).max() > 0.1


def test_loguniform_gaps_respect_min_window_by_raising_the_smallest_gap():
    idx = _draws("loguniform_gaps", min_window=13, max_window=31)
    gaps = np.diff(idx, axis=1)
    assert gaps.min() == 4  # ceil((13 - 1) / 3)
    assert (idx[:, -1] - idx[:, 0] + 1).min() >= 13


@pytest.mark.parametrize("kind", SAMPLER_KINDS)
def test_short_videos_and_single_frame_clips(kind):
    rng = np.random.default_rng(0)
    # The whole video is shorter than min_window: clips span at most the video.
    for _ in range(50):
        idx = nonuniform_clip_indices(rng, 5, 4, kind, min_window=8, max_window=16)
        assert np.all(np.diff(idx) >= 1) and idx[0] >= 0 and idx[-1] <= 4
    one = nonuniform_clip_indices(rng, 5, 1, kind, min_window=1, max_window=4)
    assert one.shape == (1,) and 0 <= one[0] < 5
    full = nonuniform_clip_indices(rng, 4, 4, kind, min_window=1, max_window=4)
    np.testing.assert_array_equal(full, np.arange(4))


def test_bad_arguments_raise_clear_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError) as e:
        nonuniform_clip_indices(rng, 10, 3, "x", min_window=3, max_window=8)
    assert str(e.value) == (
        "data.sampler: expected one of ['uniform_stride', 'random_subset', 'loguniform_gaps'], "
        "got 'x'"
    )
    with pytest.raises(ValueError, match="clip_frames: a clip of 12 frames"):
        nonuniform_clip_indices(rng, 10, 12, "random_subset", min_window=1, max_window=20)
    with pytest.raises(ValueError, match="max_window"):
        nonuniform_clip_indices(rng, 10, 4, "random_subset", min_window=1, max_window=3)
    with pytest.raises(ValueError, match="min_window"):
        nonuniform_clip_indices(rng, 10, 2, "random_subset", min_window=9, max_window=5)


def test_clip_times_are_seconds_from_the_first_frame_and_fps_aware():
    idx = np.array([[3, 4, 9, 20], [0, 5, 6, 7]], np.int32)
    t25 = clip_times(idx, 25.0)
    assert t25.dtype == np.float32
    np.testing.assert_allclose(t25[0], [0.0, 0.04, 0.24, 0.68], atol=1e-6)
    np.testing.assert_allclose(t25[1], [0.0, 0.2, 0.24, 0.28], atol=1e-6)
    np.testing.assert_allclose(clip_times(idx, 50.0), t25 / 2, atol=1e-7)
    with pytest.raises(ValueError, match="fps"):
        clip_times(idx, 0.0)
