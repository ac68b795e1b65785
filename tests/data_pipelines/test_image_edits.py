"""The glasses edit: drawn where the landmarks put the eyes, nowhere else."""

import numpy as np
import pytest

from data_pipelines import synthetic_faces
from data_pipelines.image_edits import draw_glasses

SIZE = 64


def test_glasses_cover_the_eyes_and_leave_the_mouth():
    (video,) = synthetic_faces.split_videos(
        "test", num_identities=1, videos_per_identity=1, fps=25.0, seed=0
    )
    frame = video.frames(np.array([0]), SIZE)[0].astype(np.float32) / 127.5 - 1.0
    marks = video.landmarks(np.array([0]))[0][:, :2]
    edited = draw_glasses(frame, marks)
    assert edited.shape == frame.shape and edited.dtype == np.float32

    def region(points):
        x0, y0 = np.floor(points.min(0) * SIZE).astype(int)
        x1, y1 = np.ceil(points.max(0) * SIZE).astype(int)
        return (slice(y0, y1 + 1), slice(x0, x1 + 1))

    for eye in (slice(36, 42), slice(42, 48)):
        x, y = np.round(marks[eye].mean(0) * SIZE - 0.5).astype(int)
        centre = (slice(y - 1, y + 2), slice(x - 1, x + 2))  # 3x3 pixels at the eye's centre
        assert edited[centre].mean() < -0.7  # dark lenses (LENS is about -0.77)
        assert edited[region(marks[eye])].mean() < frame[region(marks[eye])].mean() - 0.3
    mouth = region(marks[48:68])
    np.testing.assert_array_equal(edited[mouth], frame[mouth])
    with pytest.raises(ValueError, match="glasses edit: expected 68 landmarks with both eyes"):
        draw_glasses(frame, marks[:40])
    missing = marks.copy()
    missing[40] = np.nan
    with pytest.raises(ValueError, match="glasses edit: expected 68 landmarks"):
        draw_glasses(frame, missing)
