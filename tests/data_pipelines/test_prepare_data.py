"""`python -m launch.prepare_data`: crops, landmarks, bad files, resume, FaceMesh (TF Lite)."""

import os
import shutil

import numpy as np
import pytest

from data_pipelines.face_preparation import CropSettings, crop_frame, face_tracks, smoothed_boxes
from data_pipelines.landmark_files import load_landmarks, save_landmarks
from data_pipelines.video_decoding import decode_frames, probe_video
from data_pipelines.video_files import VideoFileSource
from data_pipelines.video_writing import write_video
from launch import prepare_data


def test_face_tracks_bridge_short_gaps_and_drop_short_runs():
    found = np.array([1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1], bool)
    assert face_tracks(found, min_frames=4, max_gap=1) == [(0, 6), (11, 20)]
    assert face_tracks(found, min_frames=3, max_gap=0) == [(3, 6), (14, 20)]


def test_smoothing_averages_the_box_without_shifting_it():
    rng = np.random.default_rng(0)
    square_TL3 = np.zeros((40, 4, 3), np.float32)
    square_TL3[:, :, :2] = [[0.4, 0.4], [0.6, 0.4], [0.4, 0.6], [0.6, 0.6]]
    jitter = rng.normal(0, 0.01, (40, 1, 1)).astype(np.float32)
    square_TL3[:, :, :2] += jitter
    raw = smoothed_boxes(square_TL3, 100, 100, CropSettings(margin=0.5, smooth_frames=1))
    smooth = smoothed_boxes(square_TL3, 100, 100, CropSettings(margin=0.5, smooth_frames=9))
    np.testing.assert_allclose(raw[:, 2], 30.0, rtol=1e-5)  # side 20 px * (1 + margin)
    assert np.std(np.diff(smooth[:, 0])) < 0.5 * np.std(np.diff(raw[:, 0]))
    np.testing.assert_allclose(smooth[:, :2].mean(0), raw[:, :2].mean(0), atol=0.2)


def test_prepare_folder_counts_everything_and_resumes(face_videos, tmp_path):
    fx = face_videos
    out = str(tmp_path / "prepared")
    settings = CropSettings(size=32, margin=0.3, smooth_frames=1, min_frames=3)
    summary = prepare_data.prepare_folder(fx.root, out, settings, landmarks="existing", workers=2)
    good = len(fx.good_train) + len(fx.good_test)
    assert summary == {
        "videos_in": good + len(fx.bad_train),
        "resumed": 0,
        # The variable-frame-rate and the 10-bit video are prepared (re-timed; made 8-bit).
        "clips_out": good + 2,
        "skipped": {
            "empty_file": 1,
            "unreadable": 2,
            "truncated": 1,
            "too_short": 1,
            "alpha_channel": 1,
            "corrupt_frame": 1,
            "no_landmarks": 1,
        },
        "errors": [],
    }
    assert "clips out 13, skipped 8 (empty_file 1," in prepare_data.format_summary(summary)
    source = VideoFileSource(out, "train", image_size=32, min_frames=3, verify=True)
    # Training reads all of them, the two prepared ones now constant-rate and 8-bit.
    assert len(source) == len(fx.good_train) + 2 and not source.report.skipped
    # Landmarks are in crop coordinates: with no smoothing each frame's points span the
    # central 1 / (1 + margin) of the crop.
    track = load_landmarks(os.path.join(out, "train", "id00001", "clipA", "00001.npz"))
    span = np.ptp(track.landmarks_TLC[..., :2], axis=1).max(-1)
    np.testing.assert_allclose(span, 1 / 1.3, rtol=1e-4)
    centre = (track.landmarks_TLC[..., :2].max(1) + track.landmarks_TLC[..., :2].min(1)) / 2
    np.testing.assert_allclose(centre, 0.5, atol=1e-5)
    # The pixels are the crop of the source frame (up to H.264 loss).
    name = "id00001/clipA/00001"
    raw_probe = probe_video(os.path.join(fx.root, "train", name + ".mp4"))
    raw = load_landmarks(os.path.join(fx.root, "train", name + ".npz")).landmarks_TLC
    box = smoothed_boxes(raw[5:6], 64, 64, settings)[0]
    expected = crop_frame(decode_frames(raw_probe, [5])[0], box, 32).astype(np.float32)
    got = decode_frames(probe_video(os.path.join(out, "train", name + ".mp4")), [5])[0]
    assert np.abs(got - expected).mean() < 6.0

    mtime = os.path.getmtime(os.path.join(out, "train", name + ".mp4"))
    again = prepare_data.prepare_folder(fx.root, out, settings, landmarks="existing", workers=2)
    assert again == dict(summary, resumed=summary["videos_in"])
    assert os.path.getmtime(os.path.join(out, "train", name + ".mp4")) == mtime


def test_mismatched_landmarks_are_an_error_naming_the_file(face_videos, tmp_path, capsys):
    fx = face_videos
    src = tmp_path / "in" / "train"
    os.makedirs(src)
    shutil.copy(os.path.join(fx.root, "train", "id00001", "clipA", "00001.mp4"), src / "a.mp4")
    save_landmarks(src / "a.npz", fx.landmarks(fx.frames + 2, 0), fx.fps, "synthetic68")
    code = prepare_data.main(
        [
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--size",
            "32",
            "--landmarks",
            "existing",
            "--workers",
            "1",
            "--min_frames",
            "3",
        ]
    )
    assert code == 1
    assert f"error: {src / 'a.npz'}: expected landmarks for the {fx.frames} frames" in (
        capsys.readouterr().err
    )


def test_missing_face_models_are_one_line(face_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORED_JAX_FACE_MODELS", str(tmp_path / "no_models"))
    with pytest.raises(SystemExit, match=r"^error: landmarks: no face model .*; install them"):
        prepare_data.main(["--input", face_videos.root, "--output", str(tmp_path / "out")])


def _face_video(path, num_frames=30):
    """Grace Hopper's portrait (matplotlib's sample data) sliding right on a grey canvas."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        face = np.asarray(Image.open(f).convert("RGB").resize((160, 200)))
    frames = np.full((num_frames, 256, 320, 3), 128, np.uint8)
    for t in range(num_frames):
        x = 20 + 2 * t
        frames[t, 28:228, x : x + 160] = face
    write_video(path, frames, 25.0)
    return frames


def test_facemesh_landmarks_follow_a_real_face(face_videos, face_models, tmp_path):
    from data_pipelines.face_preparation import MediaPipeFaceMesh, driving_landmarks, prepare_video

    src = tmp_path / "in" / "train"
    os.makedirs(src)
    _face_video(str(src / "hopper.mp4"))
    settings = CropSettings(size=128, margin=0.4, smooth_frames=5, min_frames=8)
    (clip,) = prepare_video(str(src / "hopper.mp4"), MediaPipeFaceMesh(), settings)
    track = clip.landmarks
    assert track.layout == "mediapipe468" and track.landmarks_TLC.shape == (30, 468, 3)
    assert clip.frames_THWC.shape == (30, 128, 128, 3)
    # The crop follows the face, so in crop coordinates the face stays put (the 2 px/frame
    # slide would move it 0.6 of the crop over the clip).
    centre_T2 = track.landmarks_TLC[..., :2].mean(1)
    assert np.abs(centre_T2 - centre_T2.mean(0)).max() < 0.05
    assert 0.3 < centre_T2[:, 0].mean() < 0.7 and 0.3 < centre_T2[:, 1].mean() < 0.7
    driving = driving_landmarks(str(src / "hopper.mp4"), settings)
    np.testing.assert_allclose(driving.landmarks_TLC, track.landmarks_TLC, atol=1e-6)
    # A video without a face is skipped as such.
    write_video(str(src / "noface.mp4"), face_videos.coded_frames(12, 64, 64, 0), 25.0)
    summary = prepare_data.prepare_folder(
        str(tmp_path / "in"), str(tmp_path / "out"), settings, landmarks="facemesh", workers=1
    )
    assert summary["clips_out"] == 1 and summary["skipped"] == {"no_face": 1}
