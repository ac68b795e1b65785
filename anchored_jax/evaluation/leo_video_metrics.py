"""What a rendered long LEO video shows: quality by distance from frame 0, seams, edits.

LEO renders a long video by moving one first frame with generated motion codes, so there is no
ground-truth frame to compare with. These measures need none:

- appearance drift: the distance of the face region's colour statistics to frame 0's
  (`consistency_metrics.appearance_drift_T`, the face box following each frame's landmarks).
  A face that fades, smears or changes colour far from frame 0 drifts;
- sharpness: each frame's mean absolute spatial gradient divided by frame 0's. Blur lowers
  it, noise and broken warps raise it; 1 is as sharp as the first frame;
- seam ratio: mean frame change |x[t+1] - x[t]| where blocks of L-1 frames meet, divided by
  the change within blocks (`segment_metrics`). L-1 is where LEO's chain starts each new
  chunk, so a chain that jumps there shows > 1; the real motion rendered gives the reference.

`video_summary` pools these for one video; `edit_summary` compares a re-animation of an edited
first frame with the unedited one: the motion kept (landmark distance between the two renders,
in pixels) and the edit kept (the mean change the edit makes, at frames 1.. over frame 0).
Frames are `[T, H, W, C]` in [-1, 1]; landmarks `[T, L, 2]` in [0, 1] of the frame.
"""

from __future__ import annotations

import numpy as np

from anchored_jax.evaluation.consistency_metrics import appearance_drift_T
from anchored_jax.evaluation.distance_bins import log_binned_curve
from anchored_jax.evaluation.segment_metrics import ANCHOR_OWNER, seam_ratio


def block_owner_T(num_frames: int, length: int) -> np.ndarray:
    """Owner of each frame when frames 1.. are cut into blocks of `length - 1` (LEO's chunks);
    frame 0, the first frame, is owned by none."""
    if length < 2:
        raise ValueError(f"length: expected at least 2 steps per block, got {length}")
    owner_T = (np.arange(num_frames) - 1) // (length - 1)
    owner_T[0] = ANCHOR_OWNER
    return owner_T


def sharpness_T(video_THWC: np.ndarray) -> np.ndarray:
    """Mean absolute horizontal and vertical gradient of each frame, over frame 0's."""
    video = np.asarray(video_THWC, np.float64)
    grad_T = np.abs(np.diff(video, axis=1)).mean(axis=(1, 2, 3)) + np.abs(
        np.diff(video, axis=2)
    ).mean(axis=(1, 2, 3))
    return grad_T / max(grad_T[0], 1e-12)


def video_summary(video_THWC: np.ndarray, landmarks_TLC: np.ndarray, length: int) -> dict:
    """Means over frames 1.., curves by distance from frame 0 and the seam ratio of a video."""
    video = np.asarray(video_THWC, np.float64)
    if video.ndim != 4 or len(video) < 2:
        raise ValueError(f"video: expected [T >= 2, H, W, C] frames, got shape {video.shape}")
    drift_T = appearance_drift_T(video, landmarks_TLC, video[0], landmarks_TLC[0])
    sharp_T = sharpness_T(video)
    distance_T = np.arange(len(video), dtype=np.float64)
    curves = {}
    for name, values_T in (("drift", drift_T), ("sharpness", sharp_T)):
        x, y = log_binned_curve(distance_T[1:], values_T[1:], len(video))
        curves[name] = dict(distance=x, mean=y)
    return dict(
        drift_mean=float(drift_T[1:].mean()),
        sharpness_mean=float(sharp_T[1:].mean()),
        seam_ratio=seam_ratio(video, block_owner_T(len(video), length)),
        curves=curves,
    )


def edit_summary(
    original_THWC: np.ndarray,
    edited_THWC: np.ndarray,
    original_landmarks_TLC: np.ndarray,
    edited_landmarks_TLC: np.ndarray,
) -> dict:
    """How an edited first frame's re-animation keeps the motion and the edit.

    motion_px: mean landmark distance between the two renders, frames 1.. (pixels);
    edit_kept: mean |edited - original| over frames 1.. divided by frame 0's (1 = the edit
    moves with the face undiminished, 0 = it faded out).
    """
    original = np.asarray(original_THWC, np.float64)
    edited = np.asarray(edited_THWC, np.float64)
    if original.shape != edited.shape:
        raise ValueError(f"edited video: expected shape {original.shape}, got {edited.shape}")
    size = original.shape[1]
    xy_a = np.asarray(original_landmarks_TLC, np.float64)[..., :2] * size
    xy_b = np.asarray(edited_landmarks_TLC, np.float64)[..., :2] * size
    motion_T = np.linalg.norm(xy_a - xy_b, axis=-1).mean(axis=1)
    change_T = np.abs(edited - original).mean(axis=(1, 2, 3))
    return dict(
        motion_px=float(motion_T[1:].mean()),
        motion_px_frame0=float(motion_T[0]),
        edit_change_frame0=float(change_T[0]),
        edit_kept=float(change_T[1:].mean() / max(change_T[0], 1e-12)),
    )
