"""Content edits of a first frame, for LEO's editing by re-animation.

LEO keeps a video's motion and changes its appearance by editing the first frame and animating
the edited frame with the same motion codes. `draw_glasses` is an edit with a known place on
the face: dark glasses over both eyes, drawn from iBUG-68 landmarks (eyes 36-41 and 42-47,
the layout of the synthetic faces and of `landmark_layouts`' FaceMesh subset). A re-animation
that keeps the edit carries the glasses along with the head.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

EDITS = ("glasses",)
EYES = (slice(36, 42), slice(42, 48))  # iBUG-68: image-left eye, image-right eye
LENS = (28, 30, 38)  # RGB of the lenses
SUPERSAMPLE = 4  # drawn at 4x and averaged down, so small frames get smooth edges


def draw_glasses(frame_HWC: np.ndarray, landmarks_LC: np.ndarray) -> np.ndarray:
    """The frame (float in [-1, 1]) with dark glasses over the eyes of its 68 landmarks."""
    frame = np.asarray(frame_HWC, np.float32)
    points = np.asarray(landmarks_LC, np.float64)[:, :2]
    if points.shape[0] != 68 or not np.isfinite(points[36:48]).all():
        raise ValueError(
            f"glasses edit: expected 68 landmarks with both eyes found, got {points.shape[0]}"
        )
    height, width = frame.shape[:2]
    big = (width * SUPERSAMPLE, height * SUPERSAMPLE)
    mask = Image.new("L", big, 0)
    draw = ImageDraw.Draw(mask)
    scale = np.array(big, np.float64)
    centres = []
    for eye in EYES:
        xy = points[eye] * scale
        centre = xy.mean(axis=0)
        half_w = max(0.75 * (xy[:, 0].max() - xy[:, 0].min()), SUPERSAMPLE * 1.5)
        half_h = 0.8 * half_w
        draw.ellipse((*(centre - (half_w, half_h)), *(centre + (half_w, half_h))), fill=255)
        centres.append((centre, half_w))
    (left, left_w), (right, right_w) = centres
    bridge = max(SUPERSAMPLE, round(0.15 * left_w))
    draw.line([tuple(left + (left_w, 0)), tuple(right - (right_w, 0))], fill=255, width=bridge)
    alpha = np.asarray(mask.resize((width, height), Image.BOX), np.float32)[..., None] / 255.0
    lens = np.asarray(LENS, np.float32) / 127.5 - 1.0
    return (1.0 - alpha) * frame + alpha * lens
