"""Edits of a driving landmark track, for re-rendering a video with the same noise and anchor.

Each edit is a pure numpy function of a `[T, L, 3]` track in the project's landmark format
(x, y in [0, 1], iBUG-68 order for the synthetic layout) and returns a new track; the sampler
then re-renders with the same seed, so only what the edit changed should change in the video.

- `freeze_head_pose`: removes the rigid head motion (a per-frame similarity transform fitted
  on the jaw and nose, which expressions barely move) while keeping the expression;
- `scale_mouth_motion`: exaggerates (>1) or damps (<1) the mouth's motion around its shape in
  a reference frame;
- `offset_region`: adds a constant (x, y) offset to one region, e.g. raised brows;
- `retime`: resamples the track at new frame times (slow motion, frame interpolation); the
  new times are also what the sampler is given, since it is conditioned on real-valued times.
"""

from __future__ import annotations

import numpy as np

# iBUG-68 regions (data_pipelines/face_geometry.py, LANDMARK_LAYOUT "synthetic68").
REGIONS = {
    "jaw": np.arange(0, 17),
    "brows": np.arange(17, 27),
    "nose": np.arange(27, 36),
    "eyes": np.arange(36, 48),
    "mouth": np.arange(48, 68),
}
RIGID_POINTS = np.concatenate([REGIONS["jaw"], REGIONS["nose"]])


def _check_track(landmarks_TLC: np.ndarray, needs_68: bool = True) -> np.ndarray:
    landmarks_TLC = np.asarray(landmarks_TLC, np.float64)
    if landmarks_TLC.ndim != 3 or landmarks_TLC.shape[-1] != 3:
        raise ValueError(f"edit: expected landmarks [T, L, 3], got shape {landmarks_TLC.shape}")
    if needs_68 and landmarks_TLC.shape[1] != 68:
        raise ValueError(
            f"edit: this edit needs the 68-point layout, got {landmarks_TLC.shape[1]} points"
        )
    return landmarks_TLC


def fit_similarity(source_N2: np.ndarray, target_N2: np.ndarray):
    """Scale s, rotation R (2x2) and shift t minimising |s R source + t - target|^2."""
    # Umeyama 1991, "Least-squares estimation of transformation parameters".
    mu_s, mu_t = source_N2.mean(0), target_N2.mean(0)
    a, b = source_N2 - mu_s, target_N2 - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(sigma) @ d) / np.sum(a * a)
    return scale, rotation, mu_t - scale * rotation @ mu_s


def freeze_head_pose(landmarks_TLC: np.ndarray, reference_frame: int = 0) -> np.ndarray:
    """Every frame's points mapped by the similarity that puts its jaw and nose on the
    reference frame's: the head stays where it is in the reference, the expression moves."""
    track = _check_track(landmarks_TLC)
    reference = track[reference_frame, RIGID_POINTS, :2]
    out = track.copy()
    for t in range(len(track)):
        s, R, shift = fit_similarity(track[t, RIGID_POINTS, :2], reference)
        out[t, :, :2] = s * track[t, :, :2] @ R.T + shift
    return out.astype(np.float32)


def scale_mouth_motion(
    landmarks_TLC: np.ndarray, factor: float, reference_frame: int = 0
) -> np.ndarray:
    """Mouth points moved to `reference + factor * (mouth_t - reference)` about each frame's
    mouth centre: the mouth's shape changes scale, its position follows the head."""
    track = _check_track(landmarks_TLC)
    mouth = REGIONS["mouth"]
    out = track.copy()
    centre_T12 = track[:, mouth, :2].mean(axis=1, keepdims=True)
    shape_TM2 = track[:, mouth, :2] - centre_T12
    reference_M2 = shape_TM2[reference_frame]
    out[:, mouth, :2] = centre_T12 + reference_M2 + factor * (shape_TM2 - reference_M2)
    return out.astype(np.float32)


def offset_region(landmarks_TLC: np.ndarray, region: str, offset_xy) -> np.ndarray:
    """Adds a constant (x, y) offset (image fractions) to one region's points in every frame."""
    track = _check_track(landmarks_TLC)
    if region not in REGIONS:
        raise ValueError(f"edit.region: expected one of {list(REGIONS)}, got {region!r}")
    out = track.copy()
    out[:, REGIONS[region], :2] += np.asarray(offset_xy, np.float64)
    return out.astype(np.float32)


def retime(
    landmarks_TLC: np.ndarray, frame_times_T: np.ndarray, new_times_U: np.ndarray
) -> np.ndarray:
    """The track linearly interpolated at `new_times_U` (seconds, within the original span)."""
    track = _check_track(landmarks_TLC, needs_68=False)
    times = np.asarray(frame_times_T, np.float64)
    new_times = np.asarray(new_times_U, np.float64)
    if new_times.min() < times[0] - 1e-9 or new_times.max() > times[-1] + 1e-9:
        raise ValueError(
            f"edit.times: new times must lie in [{times[0]}, {times[-1]}] s, got "
            f"[{new_times.min()}, {new_times.max()}]"
        )
    flat = track.reshape(len(track), -1)
    out = np.stack([np.interp(new_times, times, flat[:, j]) for j in range(flat.shape[1])], 1)
    return out.reshape((len(new_times),) + track.shape[1:]).astype(np.float32)
