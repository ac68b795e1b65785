"""Landmark layouts and the conversion a model needs: FaceMesh's 468 points to iBUG-68 order.

A model is trained on one layout (`model.num_landmarks`): the synthetic faces give 68 points in
iBUG-68 order (`face_geometry`, layout "synthetic68"), prepared real videos give MediaPipe
FaceMesh's 468 ("mediapipe468"). A FaceMesh track driving a 68-point model is converted here;
any other mismatch is refused in one line naming both layouts.

The converted points keep the project's coordinate convention: x, y in [0, 1] of the frame the
model sees, z in the same units, smaller = nearer the camera. One shift makes FaceMesh depth
read as the synthetic one: the synthetic jaw outline lies in the head's centre plane (z = 0,
`face_geometry.face_landmarks`), so the converted jaw's mean depth is moved to 0 per frame.
"""

from __future__ import annotations

import numpy as np

from data_pipelines.landmark_files import LAYOUT_POINTS

IBUG68 = "synthetic68"  # the synthetic faces' layout name: iBUG-68 order
FACEMESH = "mediapipe468"

# FaceMesh vertex (or the midpoint of two) for each iBUG-68 point, part by part; "left" and
# "right" are image sides, as in `face_geometry`.
# Correspondence from github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks (mp2dlib.py).
_IBUG68_FROM_FACEMESH = (
    # jaw 0-16, image-left ear round the chin to the image-right ear
    127, 234, 93, (132, 58), (58, 172), 136, 150, 176, 152,
    400, 379, 365, (397, 288), 361, 323, 454, 356,
    # brows 17-26, each from its image-left end
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    # nose bridge 27-30 top to tip, then the nostril base 31-35 image-left to right
    (168, 6), (197, 195), 5, 4,
    75, 97, 2, 326, 305,
    # eyes 36-47: image-left corner, upper lid, other corner, lower lid
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    # outer lip 48-59 from the image-left corner over the top, inner lip 60-67 likewise
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip
# [68, 2]: both columns equal where one vertex suffices, so the mean of the pair is the point.
FACEMESH_PAIRS_62 = np.array(
    [p if isinstance(p, tuple) else (p, p) for p in _IBUG68_FROM_FACEMESH], np.int64
)
assert FACEMESH_PAIRS_62.shape == (68, 2)
_JAW = slice(0, 17)


def facemesh_to_ibug68(landmarks_TLC: np.ndarray) -> np.ndarray:
    """float32 `[T, 468, 3]` FaceMesh points to `[T, 68, 3]` iBUG-68 points, jaw depth at 0."""
    points = np.asarray(landmarks_TLC, np.float32)
    if points.ndim != 3 or points.shape[1:] != (468, 3):
        raise ValueError(f"expected FaceMesh landmarks [T, 468, 3], got shape {points.shape}")
    out_T68C = points[:, FACEMESH_PAIRS_62].mean(axis=2)
    out_T68C[..., 2] -= out_T68C[:, _JAW, 2].mean(axis=1, keepdims=True)
    return out_T68C


def layout_of(num_points: int) -> str:
    """The layout name of a point count ("68 points" when no known layout has that many)."""
    names = [name for name, n in LAYOUT_POINTS.items() if n == num_points]
    return names[0] if names else f"{num_points} points"


def to_model_layout(landmarks_TLC: np.ndarray, layout: str, num_landmarks: int, where: str):
    """The track in the layout a model of `num_landmarks` points was trained on.

    Returns the points unchanged when the counts agree, converts FaceMesh to iBUG-68 for a
    68-point model, and otherwise raises a one-line ValueError starting with `where`.
    """
    num_points = landmarks_TLC.shape[1]
    if num_points == num_landmarks:
        return np.asarray(landmarks_TLC, np.float32)
    if num_points == LAYOUT_POINTS[FACEMESH] and num_landmarks == LAYOUT_POINTS[IBUG68]:
        return facemesh_to_ibug68(landmarks_TLC)
    raise ValueError(
        f"{where}: landmark layout {layout!r} ({num_points} points) cannot drive this model, "
        f"trained on {layout_of(num_landmarks)!r} ({num_landmarks} points); only "
        f"{FACEMESH} -> {IBUG68} is converted"
    )
