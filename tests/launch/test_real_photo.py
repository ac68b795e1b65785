"""A real photo and an ffmpeg-made video of it, end to end through `launch.reenact`.

The photo is scikit-image's astronaut (Eileen Collins, a package-shipped real portrait); the
driving video pans a window over it a few pixels per frame, written by the project's own
video writer (ffmpeg's H.264 through PyAV). Nothing here trains: the sDiT is the session's
shared tiny run (`tiny_sdit_run`)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from data_pipelines.face_crop import crop_face
from data_pipelines.landmark_files import load_landmarks
from data_pipelines.landmark_layouts import facemesh_to_ibug68, to_model_layout
from data_pipelines.output_videos import to_display
from data_pipelines.video_decoding import decode_frames, probe_video
from data_pipelines.video_writing import write_video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAN_PX = 4  # window shift per frame, to the right
NUM_FRAMES = 10
DISPLAY = 64


@pytest.fixture(scope="module")
def astronaut_crop():
    return crop_face(skimage.data.astronaut(), 256)


def panned_video(path, num_frames=NUM_FRAMES):
    """A 320x256 window moving right over the photo: the face moves left in the frame."""
    photo = skimage.data.astronaut()
    frames = [photo[0:256, 80 + PAN_PX * t : 400 + PAN_PX * t] for t in range(num_frames)]
    write_video(str(path), np.stack(frames), 25.0)


def test_facemesh_to_ibug68_on_the_astronaut(astronaut_crop):
    points = facemesh_to_ibug68(astronaut_crop.landmarks_LC[None])[0]
    x, y, z = points.T
    # iBUG order with image-left first: jaw 0 left of 16, each eye's corners left to right.
    assert x[0] < x[8] < x[16] and x[36] < x[39] < x[42] < x[45] and x[48] < x[54]
    # Top to bottom: brows, eyes, nose tip, mouth, chin (the lowest point).
    assert y[19] < y[37] < y[30] < y[51] < y[57] < y[8] and y[8] == y.max()
    # Depth as the synthetic faces have it: jaw plane at 0, the nose tip nearest the camera.
    assert abs(z[:17].mean()) < 1e-6 and z[30] == z.min() and z[30] < -0.1
    # Symmetric face, centred crop: the eyes' midpoint lies near the crop's middle.
    assert abs((x[36] + x[45]) / 2 - 0.5) < 0.05
    with pytest.raises(ValueError, match="'mediapipe468' .468 points. cannot drive .*'10 points'"):
        to_model_layout(astronaut_crop.landmarks_LC[None], "mediapipe468", 10, "--driving x")


def run_reenact(*args, timeout=240):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-m", "launch.reenact", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_reenact_a_photo_with_a_video_of_it(tiny_sdit_run, astronaut_crop, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(photo, quality=95)
    video = tmp_path / "driving.mp4"
    panned_video(video)
    out = tmp_path / "out" / "astronaut.mp4"
    proc = run_reenact(
        "--checkpoint", tiny_sdit_run["export"], "--source", str(photo), "--driving", str(video),
        "--steps", "2", "--display_size", str(DISPLAY), "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "landmarks driving.mp4" in proc.stderr  # the extraction's progress bar

    # The landmarks were written beside the output, one FaceMesh frame per video frame.
    track = load_landmarks(tmp_path / "out" / "astronaut.landmarks.npz")
    assert track.layout == "mediapipe468" and track.landmarks_TLC.shape == (NUM_FRAMES, 468, 3)
    assert track.fps == pytest.approx(25.0)
    # The face moves left PAN_PX per frame; the crop box follows it (smoothed over time, so
    # it lags near the ends), so in crop units (side ~144 px) the face moves left, by much
    # less than the pan: 0.06 of the crop here against the pan's 0.25.
    pan = (NUM_FRAMES - 1) * PAN_PX / astronaut_crop.box[2]
    moved = track.landmarks_TLC[-1, :, 0].mean() - track.landmarks_TLC[0, :, 0].mean()
    assert -0.5 * pan < moved < 0

    # The side-by-side video shows the face crop of the photo as its first panel.
    side = probe_video(str(tmp_path / "out" / "astronaut_side_by_side.mp4"))
    frames = decode_frames(side, np.arange(side.num_frames))
    assert frames.shape == (NUM_FRAMES, DISPLAY, 3 * DISPLAY, 3)
    crop_32 = crop_face(skimage.data.astronaut(), 32).image_HWC  # the tiny model's side
    expected = to_display(crop_32[None] / 127.5 - 1.0, DISPLAY)[0].astype(np.float32)
    panel = frames[0, :, :DISPLAY].astype(np.float32)
    assert np.abs(panel - expected).mean() < 8  # JPEG source, H.264 at quality 18
    Image.fromarray(frames[0]).save(tmp_path / "out" / "side_by_side_0.png")
    # Landmarks panel: dots drawn on black, not empty.
    assert (frames[0, :, DISPLAY : 2 * DISPLAY] > 100).any()

    # Reusing the written landmarks as --driving gives the same number of frames.
    again = run_reenact(
        "--checkpoint", tiny_sdit_run["export"], "--source", str(photo),
        "--driving", str(tmp_path / "out" / "astronaut.landmarks.npz"), "--steps", "1",
        "--display_size", "32", "--out", str(tmp_path / "again.mp4"),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert probe_video(str(tmp_path / "again.mp4")).num_frames == NUM_FRAMES


def test_inputs_without_a_face_get_one_line_before_the_model_loads(tmp_path):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(noise)
    blank = tmp_path / "blank.mp4"
    write_video(str(blank), np.full((10, 48, 64, 3), 128, np.uint8), 25.0)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    # The checkpoint does not exist: a checkpoint error would show the model load came first.
    missing = str(tmp_path / "no_checkpoint")
    cases = [
        (noise, "synthetic:0", f"--source {noise}: expected an image (the model's frame size) "
         "or a photo with one visible face; no face found (FaceMesh) in this 128x96 image"),
        (photo, str(blank), f"--driving {blank}: no face (no face in any of 10 frames)"),
        (not_image, "synthetic:0", f"--source {not_image}: expected an image file"),
    ]  # fmt: skip
    for source, driving, message in cases:
        proc = run_reenact(
            "--checkpoint", missing, "--source", str(source), "--driving", driving,
            "--out", str(tmp_path / "o.mp4"),
        )  # fmt: skip
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and lines[-1].startswith(f"error: {message}"), proc.stderr
        assert not any("Traceback" in line for line in lines)
    assert not os.path.exists(tmp_path / "o.mp4")
