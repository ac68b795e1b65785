"""Video files through PyAV: frame-accurate access, fix-ups, bad files skipped and counted."""

import collections
import os
import shutil

import numpy as np
import pytest

from data_pipelines.folder_scan import SquareCrop
from data_pipelines.landmark_files import save_landmarks
from data_pipelines.video_decoding import BadVideoError, decode_frames, iterate_frames, probe_video
from data_pipelines.video_files import VideoFileSource


def _square(frames_KHWC, size=64):
    k, h, w, _ = frames_KHWC.shape
    return SquareCrop(w, h, size).frames(frames_KHWC)


def test_random_access_returns_exactly_the_asked_frames(face_videos):
    fx, rng = face_videos, np.random.default_rng(0)
    for name, spec in sorted(fx.good_train.items()):  # h264 hevc vp8 vp9 ffv1 mpeg4 mjpeg
        probe = probe_video(os.path.join(fx.root, "train", name))
        height, width = spec["size"]
        assert (probe.num_frames, probe.height, probe.width) == (fx.frames, height, width), name
        np.testing.assert_allclose(probe.fps, fx.fps, rtol=1e-9)
        assert probe.rotation == spec.get("rotation", 0), name
        every_THWC = np.stack(list(iterate_frames(probe)))
        np.testing.assert_array_equal(fx.read_codes(_square(every_THWC)), np.arange(fx.frames))
        for _ in range(3):  # Unsorted, repeated and sparse indices, as clips and identities ask.
            indices = rng.integers(0, fx.frames, 5)
            np.testing.assert_array_equal(decode_frames(probe, indices), every_THWC[indices])
        last_first = decode_frames(probe, [fx.frames - 1, 0])
        np.testing.assert_array_equal(last_first, every_THWC[[-1, 0]])


def test_scan_skips_each_bad_file_once_with_its_reason(face_videos):
    fx = face_videos
    source = VideoFileSource(fx.root, "train", image_size=32, min_frames=3, verify=True)
    report = source.report
    assert report.skipped == collections.Counter(fx.bad_train.values())
    expected = sorted((os.path.join(fx.root, "train", n), r) for n, r in fx.bad_train.items())
    assert sorted(report.skipped_files) == expected
    assert report.kept == len(source) == len(fx.good_train)
    assert report.adjusted == collections.Counter(
        rotated=1, grayscale=1, odd_size=1, center_cropped=2
    )
    total, kept = len(fx.good_train) + len(fx.bad_train), len(fx.good_train)
    assert f"{total} videos in, {kept} kept, {len(fx.bad_train)} skipped" in report.summary()
    # Identities: the top folder under the split, in sorted order.
    ids = [source[i].identity_id for i in range(len(source))]
    assert ids == [int(n[2:7]) - 1 for n in source.names]


def test_corrupt_frame_raises_and_is_never_replaced(face_videos):
    fx = face_videos
    # Without the decoding scan the file is kept; a clip that needs the damaged GOP fails loudly.
    source = VideoFileSource(fx.root, "train", image_size=32, min_frames=3)
    assert len(source) == len(fx.good_train) + 1
    video_id = source.names.index("bad/corrupt_mid.mp4")
    with pytest.raises(BadVideoError, match=r"corrupt_mid\.mp4: corrupt frame"):
        source.read_frames(video_id, [fx.frames // 2])
    # Frames before the damage (a GOP of their own) still come back right.
    np.testing.assert_array_equal(fx.read_codes(source.read_frames(video_id, [1, 3])), [1, 3])


def test_frames_and_landmarks_are_cropped_alike(face_videos):
    fx = face_videos
    source = VideoFileSource(fx.root, "train", image_size=32, min_frames=3)
    video_id = source.names.index("id00004/clipD/odd.avi")  # 91 wide, 67 high
    record = source[video_id]
    raw = fx.landmarks(fx.frames, seed=sorted(fx.good_train).index("id00004/clipD/odd.avi"))
    x0 = (91 - 67) // 2
    np.testing.assert_allclose(record.landmarks_TLC[..., 0], (raw[..., 0] * 91 - x0) / 67, 1e-5)
    np.testing.assert_allclose(record.landmarks_TLC[..., 1], raw[..., 1], rtol=1e-5)
    np.testing.assert_allclose(record.landmarks_TLC[..., 2], raw[..., 2] * 91 / 67, rtol=1e-5)
    frames = source.read_frames(video_id, [4, 9])
    assert frames.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(fx.read_codes(frames), [4, 9])


def test_landmark_file_of_the_wrong_length_is_an_error_naming_it(face_videos, tmp_path):
    fx = face_videos
    name = "id00001/clipA/00001.mp4"
    os.makedirs(tmp_path / "train" / "v")
    shutil.copy(os.path.join(fx.root, "train", name), tmp_path / "train" / "v" / "a.mp4")
    bad = tmp_path / "train" / "v" / "a.npz"
    save_landmarks(bad, fx.landmarks(fx.frames - 1, 0), fx.fps, "synthetic68")
    with pytest.raises(ValueError, match=rf"^{bad}: expected landmarks for the {fx.frames} "):
        VideoFileSource(str(tmp_path), "train", image_size=32, min_frames=3)


def test_a_folder_with_nothing_usable_says_so(face_videos, tmp_path):
    fx = face_videos
    os.makedirs(tmp_path / "train")
    shutil.copy(os.path.join(fx.root, "train", "bad", "empty.mp4"), tmp_path / "train")
    with pytest.raises(ValueError, match=r"no usable videos in .*train \(skipped: empty_file 1\)$"):
        VideoFileSource(str(tmp_path), "train", image_size=32, min_frames=3)
