"""Anchored training windows and the animator-code cache of data_pipelines/motion_codes.py."""

import os

import ml_collections
import numpy as np
import pytest

from data_pipelines.motion_codes import (
    AnchoredWindowReader,
    build_anchored_window_dataset,
    cached_codes,
    code_cache_path,
    read_code_file,
    window_gap,
)

T, M, L = 200, 3, 6


def _codes():
    # Code value = 1000 * video + frame + magnitude / 10: every window can be traced back.
    video, frame, mag = np.meshgrid(np.arange(4), np.arange(T), np.arange(M), indexing="ij")
    return (1000.0 * video + frame + mag / 10).astype(np.float32)


def test_window_is_a_conditioning_code_then_consecutive_codes_at_their_gap():
    reader = AnchoredWindowReader(_codes(), L, "log_uniform")
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(400):
        video = int(rng.integers(4))
        out = reader(video, rng)
        codes, times = out["codes_LM"], out["times_L"]
        assert codes.shape == (L, M) and times.shape == (L,)
        frames = codes[:, 0] - 1000 * video  # the frame each slot came from
        anchor, gap = frames[0], times[1]
        assert times[0] == 0 and gap >= 1
        np.testing.assert_array_equal(frames[1:], anchor + gap + np.arange(L - 1))
        np.testing.assert_array_equal(times[1:], gap + np.arange(L - 1))
        assert 0 <= anchor and frames[-1] < T
        gaps.append(gap)
    gaps = np.asarray(gaps)
    # Log-uniform over 1..T-L+1: adjacent windows (LEO's chaining) and long gaps both occur.
    assert 0.05 < np.mean(gaps == 1) < 0.3
    assert np.mean(gaps > T / 2) > 0.05 and gaps.max() <= T - (L - 1)


def test_consecutive_gaps_and_bad_kind():
    rng = np.random.default_rng(1)
    assert {window_gap(rng, 100, "consecutive") for _ in range(20)} == {1}
    mixed = np.array([window_gap(rng, 1000, "mixed") for _ in range(4000)])
    # Half consecutive, plus the log-uniform half's own share of gap 1 (about 10% of it).
    assert 0.5 < np.mean(mixed == 1) < 0.6 and mixed.max() > 500
    with pytest.raises(ValueError, match="data.window_gaps"):
        AnchoredWindowReader(_codes(), L, "uniform")
    with pytest.raises(ValueError, match="data.video_frames"):
        AnchoredWindowReader(_codes()[:, :4], L, "log_uniform")


def test_dataset_batches_are_deterministic_and_resume():
    kw = dict(length=L, gaps="log_uniform", batch_size=5, seed=3)
    first = iter(build_anchored_window_dataset(_codes(), **kw))
    batches = [next(first) for _ in range(3)]
    assert batches[0]["codes_BLM"].shape == (5, L, M) and batches[0]["times_BL"].shape == (5, L)
    again = iter(build_anchored_window_dataset(_codes(), **kw))
    np.testing.assert_array_equal(next(again)["codes_BLM"], batches[0]["codes_BLM"])
    state = again.get_state()
    resumed = iter(build_anchored_window_dataset(_codes(), **kw))
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["times_BL"], batches[1]["times_BL"])


def _data(tmp_path):
    return ml_collections.ConfigDict(
        dict(
            source="synthetic", image_size=32, fps=25.0, video_frames=5,
            num_train_identities=2, num_test_identities=1, videos_per_identity=1, seed=0,
            worker_count=0, code_source="animator", animator_workdir=str(tmp_path / "anim"),
            code_cache_dir="", code_scale=1.0, code_file="",
            window_gaps="log_uniform",
        )
    )  # fmt: skip


def test_animator_codes_are_cached_by_digest_and_written_atomically(tmp_path):
    data = _data(tmp_path)
    calls = []

    def loader(digest):
        def load():
            calls.append(digest)
            # A fixed linear "encoder": mean colour per channel of each frame.
            return (lambda x_BHWC: np.asarray(x_BHWC).mean(axis=(1, 2))), digest

        return load

    codes = cached_codes(data, "train", motion_dim=3, load_encoder=loader("aaaa"))
    assert codes.shape == (2, 5, 3)
    path = code_cache_path(data, "train", "aaaa")
    assert path.startswith(str(tmp_path / "anim" / "motion_codes"))
    np.testing.assert_array_equal(read_code_file(path), codes)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]  # no temp file left
    # A second run reads the file: change it and the change comes back.
    np.savez(path, codes=codes + 1.0)
    np.testing.assert_array_equal(
        cached_codes(data, "train", motion_dim=3, load_encoder=loader("aaaa")), codes + 1.0
    )
    # Another animator (digest) or another video config is another cache entry.
    assert code_cache_path(data, "train", "bbbb") != path
    data2 = data.copy_and_resolve_references()
    data2.video_frames = 6
    assert code_cache_path(data2, "train", "aaaa") != path
    fresh = cached_codes(data, "train", motion_dim=3, load_encoder=loader("bbbb"))
    np.testing.assert_array_equal(fresh, codes)
    assert calls == ["aaaa", "aaaa", "bbbb"]


def test_landmark_stand_in_needs_no_encoder_and_animator_does(tmp_path):
    data = _data(tmp_path)
    with pytest.raises(ValueError, match="data.code_source"):
        cached_codes(data, "train", motion_dim=3)
    data.code_source = "landmarks"
    assert cached_codes(data, "test", motion_dim=3).shape == (1, 5, 3)
