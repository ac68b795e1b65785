"""Per-frame metrics of a generated video against ground truth, and appearance drift.

All inputs are float frames in [-1, 1], `[T, H, W, C]`; every function returns one number per
frame, so a study can average them per distance from the anchor. PSNR uses the [-1, 1] range
(peak-to-peak 2); SSIM is scikit-image's Gaussian-window SSIM (sigma 1.5, K1 0.01, K2 0.03,
channels averaged) on frames mapped to [0, 1]; drift compares the colour statistics of the face
region (the box around the frame's landmarks) with the source's.
"""

from __future__ import annotations

import numpy as np

from anchored_jax.evaluation.image_metrics import ssim


def _check_pair(pred_THWC: np.ndarray, target_THWC: np.ndarray) -> None:
    if pred_THWC.shape != target_THWC.shape or pred_THWC.ndim != 4:
        raise ValueError(
            f"metrics: expected two videos [T, H, W, C] of one shape, got {pred_THWC.shape} "
            f"and {target_THWC.shape}"
        )


def l1_T(pred_THWC: np.ndarray, target_THWC: np.ndarray) -> np.ndarray:
    """Mean absolute error per frame, in [-1, 1] units."""
    _check_pair(pred_THWC, target_THWC)
    return np.abs(pred_THWC.astype(np.float64) - target_THWC).mean(axis=(1, 2, 3))


def psnr_T(pred_THWC: np.ndarray, target_THWC: np.ndarray) -> np.ndarray:
    """PSNR in dB per frame for data in [-1, 1] (capped at 100 dB for identical frames)."""
    _check_pair(pred_THWC, target_THWC)
    mse = np.square(pred_THWC.astype(np.float64) - target_THWC).mean(axis=(1, 2, 3))
    return np.minimum(10.0 * np.log10(4.0 / np.maximum(mse, 1e-12)), 100.0)


def ssim_T(pred_THWC: np.ndarray, target_THWC: np.ndarray, batch: int = 64) -> np.ndarray:
    """SSIM per frame as scikit-image defines it (`image_metrics.ssim`), on frames mapped to
    [0, 1] with a data range of 1: the convention of papers that report SSIM on 8-bit images."""
    _check_pair(pred_THWC, target_THWC)
    x = (np.asarray(pred_THWC, np.float32) + 1.0) / 2.0
    y = (np.asarray(target_THWC, np.float32) + 1.0) / 2.0
    # Fixed-size batches: one compiled shape for any clip length.
    n = len(x)
    pad = (-n) % batch
    x, y = (np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) for a in (x, y))
    out = [
        ssim(x[i : i + batch], y[i : i + batch], data_range=1.0) for i in range(0, len(x), batch)
    ]
    return np.concatenate([np.asarray(o, np.float64) for o in out])[:n]


def face_boxes_T4(landmarks_TLC: np.ndarray, image_size: int, margin: float = 0.1) -> np.ndarray:
    """Integer boxes (y0, y1, x0, x1) around each frame's landmarks, widened by `margin`."""
    xy_TL2 = np.asarray(landmarks_TLC)[..., :2]
    lo, hi = xy_TL2.min(axis=1), xy_TL2.max(axis=1)
    pad = margin * (hi - lo)
    lo = np.clip(np.floor((lo - pad) * image_size), 0, image_size - 1).astype(int)
    hi = np.clip(np.ceil((hi + pad) * image_size), 1, image_size).astype(int)
    hi = np.maximum(hi, lo + 1)
    return np.stack([lo[:, 1], hi[:, 1], lo[:, 0], hi[:, 0]], axis=1)


def colour_stats(frame_HWC: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of each channel inside the box: `[2C]`."""
    y0, y1, x0, x1 = box
    region = frame_HWC[y0:y1, x0:x1].reshape(-1, frame_HWC.shape[-1]).astype(np.float64)
    return np.concatenate([region.mean(0), region.std(0)])


def appearance_drift_T(
    video_THWC: np.ndarray,
    landmarks_TLC: np.ndarray,
    source_HWC: np.ndarray,
    source_landmarks_LC: np.ndarray,
) -> np.ndarray:
    """Distance of each frame's face-region colour statistics to the source's.

    The face region follows the driving landmarks, so pose changes move the box but not the
    statistics much; identity and colour drift (what anchoring should prevent) move them.
    """
    size = video_THWC.shape[1]
    boxes = face_boxes_T4(landmarks_TLC, size)
    source_box = face_boxes_T4(np.asarray(source_landmarks_LC)[None], size)[0]
    reference = colour_stats(source_HWC, source_box)
    stats = np.stack([colour_stats(f, b) for f, b in zip(video_THWC, boxes)])
    return np.linalg.norm(stats - reference, axis=1)


def landmark_motion_px_T(landmarks_TLC: np.ndarray, image_size: int) -> np.ndarray:
    """Mean landmark displacement from frame 0, in pixels: how far the face moved."""
    xy = np.asarray(landmarks_TLC, np.float64)[..., :2] * image_size
    return np.linalg.norm(xy - xy[:1], axis=-1).mean(axis=1)


def fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its standard error (what "within noise" means here)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size < 3:
        return float("nan"), float("nan")
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, residuals, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = x.size - 2
    rss = float(residuals[0]) if residuals.size else float(np.sum((design @ coef - y) ** 2))
    stderr = np.sqrt(rss / dof / np.sum((x - x.mean()) ** 2))
    return float(coef[0]), float(stderr)
