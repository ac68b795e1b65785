"""prepare_data's outputs: never two inputs on one name, group-readable, real timestamps kept."""

import os
import stat

import numpy as np

from data_pipelines.face_preparation import CropSettings, ExistingLandmarks, prepare_video
from data_pipelines.landmark_files import load_landmarks, save_landmarks
from data_pipelines.video_decoding import iterate_frames, probe_video
from data_pipelines.video_writing import write_video
from launch import prepare_data

# Landmarks at the frame's corners: with margin 0 the crop is the whole frame, so an output
# frame can be read back to the source frame it shows (the coded bars).
CORNERS = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], np.float32)
WHOLE_FRAME = CropSettings(size=64, margin=0.0, smooth_frames=1, min_frames=3)


def _coded_video(fx, path: str, seed: int, n: int = 12, pts_ms=None) -> None:
    write_video(path, fx.coded_frames(n, 64, 64, seed), 25.0, pts_T=pts_ms)
    landmarks = np.broadcast_to(CORNERS, (n, 2, 3)).copy()
    landmarks[:, :, 2] = seed  # tells the landmark files apart
    save_landmarks(os.path.splitext(path)[0] + ".npz", landmarks, 25.0, "corners")


class CornerLandmarks:
    """Landmarks at the frame's corners for every frame (the crop is then the whole frame)."""

    layout = "corners"

    def start(self, probe):
        pass

    def __call__(self, t, frame_HWC):
        return CORNERS.copy()


def test_same_stem_inputs_get_their_own_outputs(face_videos, tmp_path, monkeypatch):
    fx = face_videos
    src = tmp_path / "in" / "train"
    os.makedirs(src)
    write_video(str(src / "clip.mp4"), fx.coded_frames(12, 64, 64, 1), 25.0)
    write_video(str(src / "clip.webm"), fx.coded_frames(16, 64, 64, 2), 25.0)
    assert prepare_data.output_keys(["train/clip.mp4", "train/clip.webm", "train/solo.avi"]) == {
        "train/clip.mp4": "train/clip.mp4",
        "train/clip.webm": "train/clip.webm",
        "train/solo.avi": "train/solo",
    }
    monkeypatch.setitem(prepare_data._LANDMARKERS, "corners", CornerLandmarks)
    out = tmp_path / "out"
    umask = os.umask(0o022)  # the common default; a 077 umask would rightly give 0600
    try:
        summary = prepare_data.prepare_folder(
            str(tmp_path / "in"), str(out), WHOLE_FRAME, landmarks="corners", workers=1
        )
    finally:
        os.umask(umask)
    assert summary["videos_in"] == 2 and summary["clips_out"] == 2
    for name, n in (("clip.mp4", 12), ("clip.webm", 16)):
        # Each video's frames and landmarks are its own (12 vs 16 frames, frame codes 0..n-1).
        track = load_landmarks(out / "train" / f"{name}.npz")
        assert track.landmarks_TLC.shape[0] == n
        frames = np.stack(list(iterate_frames(probe_video(out / "train" / f"{name}.mp4"))))
        np.testing.assert_array_equal(fx.read_codes(frames), np.arange(n))
        for suffix in (".mp4", ".npz"):
            mode = os.stat(out / "train" / f"{name}{suffix}").st_mode
            assert mode & stat.S_IRGRP, oct(mode)  # group-readable, not 0600
    marker = out / ".prepare" / "train" / "clip.mp4.json"
    assert os.stat(marker).st_mode & stat.S_IRGRP


def test_variable_frame_rate_is_kept_and_timed_from_its_timestamps(face_videos, tmp_path):
    fx = face_videos
    gaps_ms = [40] * 8 + [80] * 8 + [20] * 7  # 24 frames over 1.1 s
    pts_ms = np.cumsum([0] + gaps_ms)
    path = str(tmp_path / "vfr.mkv")
    _coded_video(fx, path, seed=3, n=24, pts_ms=pts_ms)
    probe = probe_video(path, allow_vfr=True)
    assert probe.variable_frame_rate
    np.testing.assert_allclose(probe.times_s_T, pts_ms / 1000.0, atol=1e-9)
    for fps in (25.0, 10.0):
        settings = CropSettings(**{**WHOLE_FRAME.__dict__, "resample_fps": fps})
        (clip,) = prepare_video(path, ExistingLandmarks(), settings)
        out_times = np.arange(int(1.1 * fps + 1e-6) + 1) / fps
        # The source frame on screen at each output time.
        expected = np.searchsorted(pts_ms / 1000.0, out_times + 1e-6, side="right") - 1
        np.testing.assert_array_equal(fx.read_codes(clip.frames_THWC), expected)
        assert clip.landmarks.fps == fps and len(clip.landmarks.landmarks_TLC) == len(expected)
    # By default a variable-rate video is re-timed to its average rate (23 gaps over 1.1 s).
    (clip,) = prepare_video(path, ExistingLandmarks(), WHOLE_FRAME)
    np.testing.assert_allclose(clip.landmarks.fps, 23 / 1.1)
    codes = fx.read_codes(clip.frames_THWC)
    assert np.all(np.diff(codes) >= 0) and codes[0] == 0 and codes[-1] == 23
    # A constant-rate video keeps every frame as it is.
    _coded_video(fx, str(tmp_path / "cfr.mp4"), seed=4, n=12)
    (clip,) = prepare_video(str(tmp_path / "cfr.mp4"), ExistingLandmarks(), WHOLE_FRAME)
    np.testing.assert_array_equal(fx.read_codes(clip.frames_THWC), np.arange(12))


def test_ten_bit_video_is_prepared_as_eight_bit(face_videos, tmp_path):
    fx = face_videos
    path = str(tmp_path / "tenbit.mp4")
    write_video(path, fx.coded_frames(12, 64, 64, 5), 25.0, pix_fmt="yuv420p10le")
    save_landmarks(str(tmp_path / "tenbit.npz"), np.broadcast_to(CORNERS, (12, 2, 3)), 25.0, "c")
    (clip,) = prepare_video(path, ExistingLandmarks(), WHOLE_FRAME)
    assert clip.frames_THWC.dtype == np.uint8
    np.testing.assert_array_equal(fx.read_codes(clip.frames_THWC), np.arange(12))
