"""The landmark file format: exact round trip, atomic writes, one-line errors on bad files."""

import os

import numpy as np
import pytest

from data_pipelines.landmark_files import LandmarkTrack, load_landmarks, save_landmarks


def test_round_trip_keeps_values_fps_and_layout(tmp_path):
    landmarks = np.random.default_rng(0).uniform(size=(7, 68, 3)).astype(np.float32)
    path = tmp_path / "landmarks.npz"
    save_landmarks(path, landmarks, 29.97, "synthetic68")
    track = load_landmarks(path)
    assert isinstance(track, LandmarkTrack)
    np.testing.assert_array_equal(track.landmarks_TLC, landmarks)
    assert track.landmarks_TLC.dtype == np.float32
    assert track.fps == pytest.approx(29.97) and track.layout == "synthetic68"
    # Nothing but the file itself is left behind (the temp file was renamed into place).
    assert os.listdir(tmp_path) == ["landmarks.npz"]


def test_save_overwrites_atomically_and_keys_are_the_documented_ones(tmp_path):
    path = tmp_path / "lm.npz"
    save_landmarks(path, np.zeros((2, 468, 3), np.float64), 30, "mediapipe468")
    save_landmarks(path, np.ones((3, 468, 3), np.float32), 25, "mediapipe468")
    with np.load(path) as npz:
        assert sorted(npz.files) == ["fps", "landmarks", "layout"]
        assert npz["landmarks"].shape == (3, 468, 3) and float(npz["fps"]) == 25.0
    assert load_landmarks(path).landmarks_TLC.sum() == 3 * 468 * 3


def test_save_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"rank 3"):
        save_landmarks(tmp_path / "a.npz", np.zeros((68, 3)), 25, "synthetic68")
    with pytest.raises(ValueError, match=r"last dim 3"):
        save_landmarks(tmp_path / "a.npz", np.zeros((2, 68, 2)), 25, "synthetic68")
    with pytest.raises(ValueError, match=r"expects 68 points"):
        save_landmarks(tmp_path / "a.npz", np.zeros((2, 60, 3)), 25, "synthetic68")
    with pytest.raises(ValueError, match=r"fps > 0"):
        save_landmarks(tmp_path / "a.npz", np.zeros((2, 68, 3)), 0, "synthetic68")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "contents, message",
    [
        (dict(landmarks=np.zeros((2, 68, 3), np.float32), fps=25.0), r"missing \['layout'\]"),
        (dict(landmarks=np.zeros((68, 3), np.float32), fps=25.0, layout="synthetic68"), "rank 3"),
        (dict(landmarks=np.zeros((2, 68, 2), np.float32), fps=25.0, layout="x"), "last dim 3"),
        (dict(landmarks=np.zeros((2, 5, 3), np.float32), fps=[25.0], layout="x"), "scalar 'fps'"),
        (dict(landmarks=np.zeros((2, 5, 3), np.float32), fps=25.0, layout=3), "string scalar"),
    ],
)
def test_load_names_the_path_and_what_was_expected(tmp_path, contents, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **contents)
    with pytest.raises(ValueError, match=message) as e:
        load_landmarks(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_load_of_a_non_npz_file_is_a_value_error(tmp_path):
    path = tmp_path / "landmarks.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="expected a landmark .npz file"):
        load_landmarks(path)
