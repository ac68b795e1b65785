"""Motion accuracy: average keypoint distance (AKD) between generated and driving frames.

AKD (as in FOMM, Siarohin et al. 2019) is the mean Euclidean distance, in pixels, between the
landmarks detected on each output frame and on the matching driving frame. Landmarks are in
the project's format (`data_pipelines/landmark_files.py`): x and y in [0, 1] of the image
width and height; a point that is NaN (no face found in that frame) is left out, and
`missing_keypoint_rate` reports how often that happened on the output where the driving frame
had a face (FOMM's MKR, here per point).

`landmark_extractor` gives one detector for output and driving frames alike: "mediapipe" is
the FaceMesh the data preparation runs on real faces (an optional extra, `pip install
'.[landmarks]'`; without it the extractor is a one-line reason instead), and "synthetic" is the
regressor trained on the synthetic renderer's exact landmarks
(`data_pipelines/synthetic_landmark_regressor.py`), one per frame size, cached on disk.
"""

import functools
from collections.abc import Callable

import numpy as np

from data_pipelines.face_models import missing_reason
from data_pipelines.face_preparation import MediaPipeFaceMesh

EXTRACTORS = ("mediapipe", "synthetic")


def _xy_pair(pred_NLC, ref_NLC) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred_NLC, np.float64), np.asarray(ref_NLC, np.float64)
    if pred.shape != ref.shape or pred.ndim != 3 or pred.shape[-1] < 2:
        raise ValueError(
            f"keypoints: expected two landmark arrays [N, L, 2 or 3] of one shape, got "
            f"{pred.shape} and {ref.shape}"
        )
    return pred[..., :2], ref[..., :2]


def average_keypoint_distance(pred_NLC, ref_NLC, image_size) -> float:
    """Mean pixel distance over the points present in both; NaN if no point is in both.

    `image_size`: the side of square frames, or `(height, width)`.
    """
    pred, ref = _xy_pair(pred_NLC, ref_NLC)
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size: expected positive pixels, got {image_size}")
    delta_NL2 = (pred - ref) * np.array([width, height], np.float64)
    present_NL = np.isfinite(delta_NL2).all(axis=-1)
    if not present_NL.any():
        return float("nan")
    return float(np.sqrt(np.square(delta_NL2[present_NL]).sum(axis=-1)).mean())


def missing_keypoint_rate(pred_NLC, ref_NLC) -> float:
    """Fraction of the points found on the reference that are missing (NaN) on the output."""
    pred, ref = _xy_pair(pred_NLC, ref_NLC)
    in_ref = np.isfinite(ref).all(axis=-1)
    if not in_ref.any():
        return float("nan")
    return float((~np.isfinite(pred).all(axis=-1))[in_ref].mean())


def _rgb_frames(frames_NHWC) -> np.ndarray:
    frames = np.asarray(frames_NHWC)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"landmark frames: expected uint8 RGB frames [N, H, W, 3], got {frames.dtype} "
            f"{frames.shape}"
        )
    return frames


def _mediapipe_landmarks(frames_NHWC: np.ndarray) -> np.ndarray:
    """FaceMesh on the frames as one video: `[N, 468, 2]`, NaN rows where no face is found."""
    frames = _rgb_frames(frames_NHWC)
    mesh = MediaPipeFaceMesh()
    mesh.start(None)  # it reads nothing from the probe; a fresh tracking graph per call
    points = [mesh(t, np.ascontiguousarray(frame)) for t, frame in enumerate(frames)]
    out = np.full((len(frames), 468, 2), np.nan, np.float32)
    for t, p in enumerate(points):
        if p is not None:
            out[t] = p[:, :2]
    return out


@functools.cache  # a regressor per frame size, loaded (or trained) once
def _synthetic_regressor(image_size: int) -> Callable[[np.ndarray], np.ndarray]:
    from data_pipelines.synthetic_landmark_regressor import synthetic_landmark_extractor

    return synthetic_landmark_extractor(image_size)


def _synthetic_landmarks(frames_NHWC: np.ndarray) -> np.ndarray:
    """The synthetic faces' regressor for the frames' own size: `[N, 68, 2]`, never NaN."""
    frames = _rgb_frames(frames_NHWC)
    if frames.shape[1] != frames.shape[2]:
        raise ValueError(
            f"landmark frames: the synthetic regressor reads square frames, got "
            f"{frames.shape[1]}x{frames.shape[2]}"
        )
    return _synthetic_regressor(int(frames.shape[1]))(frames)


def landmark_extractor(kind: str) -> Callable[[np.ndarray], np.ndarray] | str:
    """A landmark detector `frames_NHWC uint8 -> [N, L, 2]`, or why it is unavailable.

    One call is one video: the detector tracks from frame to frame within it.
    """
    if kind not in EXTRACTORS:
        raise ValueError(f"landmark extractor: expected one of {EXTRACTORS}, got {kind!r}")
    if kind == "synthetic":
        return _synthetic_landmarks
    missing = missing_reason()  # FaceMesh runs on TF Lite; only its model files are needed
    return missing or _mediapipe_landmarks
