"""FaceMesh through TF Lite on a real photo (scikit-image's astronaut) and a video made of it."""

import math

import numpy as np
import pytest
from PIL import Image

from data_pipelines.face_crop import crop_face, load_source_image
from data_pipelines.face_landmarker import FaceMeshLandmarker
from data_pipelines.face_preparation import CropSettings, prepare_video
from data_pipelines.video_decoding import iterate_frames, probe_video
from data_pipelines.video_writing import write_video

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def landmarker(face_models):
    return FaceMeshLandmarker()


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()  # 512x512 portrait, the face near (225, 125)


def test_points_lie_on_the_astronauts_face(landmarker, astronaut):
    landmarker.start()
    points = landmarker.points_in_pixels(astronaut)
    assert points.shape == (468, 3)
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    # The face (measured on the photo by eye): x 175-275, y 70-180 pixels.
    assert 170 < lo[0] < 190 and 260 < hi[0] < 285, (lo, hi)
    assert 60 < lo[1] < 85 and 165 < hi[1] < 190, (lo, hi)
    eye_a, eye_b, nose_tip = points[33, :2], points[263, :2], points[1, :2]
    assert eye_a[0] < nose_tip[0] < eye_b[0]  # the nose between the eyes
    assert max(eye_a[1], eye_b[1]) < nose_tip[1]  # and below them
    assert points[1, 2] < points[234, 2]  # the nose tip is nearer the camera than the cheek


def test_points_turn_with_the_photo(landmarker, astronaut):
    """Rotating the photo 20 degrees about the face moves the points with it (within 3 px)."""
    landmarker.start()
    upright = landmarker.points_in_pixels(astronaut)[:, :2]
    centre = np.array([225.0, 125.0])
    turned = np.asarray(Image.fromarray(astronaut).rotate(20, center=tuple(centre)))
    landmarker.start()
    got = landmarker.points_in_pixels(turned)[:, :2]
    a = math.radians(-20)  # PIL turns counterclockwise on screen: y down, so -20 here
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    expected = (upright - centre) @ rot.T + centre
    error = np.linalg.norm(got - expected, axis=1)
    assert np.median(error) < 3.0 and error.max() < 10.0, (np.median(error), error.max())


def test_no_face_is_none_not_a_guess(landmarker):
    landmarker.start()
    grey = np.full((240, 320, 3), 128, np.uint8)
    assert landmarker(0, grey) is None


def test_a_photo_becomes_a_training_style_crop(face_models, astronaut, tmp_path):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    image, box = load_source_image(str(path), 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    cx, cy, side = box
    assert abs(cx - 225) < 10 and abs(cy - 125) < 10 and 120 < side < 170, box
    crop = crop_face(astronaut, 64)
    # As in training crops: the points' box is the central 1 / (1 + margin) of the crop.
    span = np.ptp(crop.landmarks_LC[:, :2], axis=0).max()
    np.testing.assert_allclose(span, 1 / (1 + CropSettings.margin), rtol=1e-4)
    # The crop is the photo's pixels there (skin tone, not the background).
    assert np.abs(image.astype(float) - crop.image_HWC).mean() < 8  # jpeg vs exact


def test_photo_without_a_face_or_not_an_image_is_one_line(face_models, tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(blank)
    with pytest.raises(ValueError, match=r"blank\.png: no face found") as e:
        load_source_image(str(blank), 64)
    assert "\n" not in str(e.value)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.jpg: expected an image file"):
        load_source_image(str(text), 64)


def test_landmarks_track_a_video_of_the_photo(landmarker, astronaut, tmp_path):
    """An H.264 video of the photo sliding 3 px per frame: the tracked points slide with it."""
    frames = np.stack([np.roll(astronaut, 3 * t, axis=1)[:, :, :] for t in range(16)])
    path = str(tmp_path / "slide.mp4")
    write_video(path, frames[:, 64:448, 64:448], 25.0)  # 384x384, the face well inside
    settings = CropSettings(size=64, margin=0.4, smooth_frames=1, min_frames=8)
    (clip,) = prepare_video(path, landmarker, settings)
    assert clip.frames_THWC.shape == (16, 64, 64, 3)
    assert clip.landmarks.layout == "mediapipe468" and clip.landmarks.fps == 25.0
    # In frame pixels the points move 3 px per frame; run the tracker on the decoded frames.
    landmarker.start()
    centres = [
        landmarker.points_in_pixels(f)[:, 0].mean() for f in iterate_frames(probe_video(path))
    ]
    np.testing.assert_allclose(np.diff(centres), 3.0, atol=1.0)
