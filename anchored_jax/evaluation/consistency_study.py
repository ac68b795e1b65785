"""The consistency study: per-frame metrics by distance from the anchor, per method.

The claim under test is "consistent regardless of temporal distance". For each method
(`anchored`, `independent`, `autoregressive`, and the `copy_source` baseline that repeats the
source frame) and each held-out clip, `frame_metrics` scores every frame against ground truth;
`summarize` pools the clips and reports, per method:

- the mean PSNR / SSIM / L1 / drift over all generated frames and over frames where the face
  moved (landmarks at least `MOVED_PX` pixels from the source's on average);
- the least-squares slope (with its standard error) of drift and PSNR against the distance
  from the anchor, in frames: a flat curve has a slope within about 2 standard errors of 0;
- the curves themselves, averaged in distance bins, for the plot.
"""

from __future__ import annotations

import numpy as np

from anchored_jax.evaluation.consistency_metrics import (
    appearance_drift_T,
    fit_slope,
    l1_T,
    landmark_motion_px_T,
    psnr_T,
    ssim_T,
)

METRICS = ("psnr", "ssim", "l1", "drift")
MOVED_PX = 1.0  # a frame "moved" when its landmarks average >= 1 pixel away from the source's


def frame_metrics(
    video_THWC: np.ndarray, real_THWC: np.ndarray, landmarks_TLC: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-frame metrics of one generated clip; frame 0 is the source (the anchor)."""
    size = real_THWC.shape[1]
    return dict(
        psnr=psnr_T(video_THWC, real_THWC),
        ssim=ssim_T(video_THWC, real_THWC),
        l1=l1_T(video_THWC, real_THWC),
        drift=appearance_drift_T(video_THWC, landmarks_TLC, real_THWC[0], landmarks_TLC[0]),
        distance=np.arange(len(video_THWC), dtype=np.float64),
        moved=landmark_motion_px_T(landmarks_TLC, size) >= MOVED_PX,
    )


def _pool(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    # Frame 0 is the anchor itself (exact for known-anchor methods): leave it out everywhere.
    return {k: np.concatenate([r[k][1:] for r in records]) for k in records[0]}


def binned_curve(
    distance: np.ndarray, values: np.ndarray, num_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of `values` in equal-width distance bins; returns (bin centres, means)."""
    edges = np.linspace(distance.min(), distance.max() + 1e-9, num_bins + 1)
    which = np.clip(np.digitize(distance, edges) - 1, 0, num_bins - 1)
    centres, means = [], []
    for b in range(num_bins):
        in_bin = which == b
        if in_bin.any():
            centres.append(distance[in_bin].mean())
            means.append(values[in_bin].mean())
    return np.asarray(centres), np.asarray(means)


def summarize(
    per_method: dict[str, list[dict[str, np.ndarray]]], num_bins: int = 16
) -> dict[str, dict]:
    """Pools clips per method into means, slopes and binned curves (see the module docstring)."""
    summary = {}
    for method, records in per_method.items():
        pooled = _pool(records)
        moved = pooled["moved"]
        row = {"frames": int(len(pooled["distance"])), "moved_frames": int(moved.sum())}
        for metric in METRICS:
            row[f"{metric}_mean"] = float(pooled[metric].mean())
            row[f"{metric}_moved_mean"] = (
                float(pooled[metric][moved].mean()) if moved.any() else None
            )
        for metric in ("drift", "psnr"):
            slope, stderr = fit_slope(pooled["distance"], pooled[metric])
            row[f"{metric}_slope_per_100_frames"] = 100.0 * slope
            row[f"{metric}_slope_stderr"] = 100.0 * stderr
        row["curves"] = {
            metric: [c.tolist() for c in binned_curve(pooled["distance"], pooled[metric], num_bins)]
            for metric in METRICS
        }
        summary[method] = row
    return summary


def markdown_table(summary: dict[str, dict]) -> str:
    """The study's table: one row per method, means and slopes (slopes per 100 frames)."""
    header = (
        "| method | PSNR (dB) | PSNR, moved frames | SSIM | L1 | drift | drift slope /100 fr "
        "| PSNR slope /100 fr |\n|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for method, r in summary.items():
        moved = r["psnr_moved_mean"]
        rows.append(
            f"| {method} | {r['psnr_mean']:.2f} | "
            f"{'n/a' if moved is None else f'{moved:.2f}'} | {r['ssim_mean']:.3f} | "
            f"{r['l1_mean']:.3f} | {r['drift_mean']:.3f} | "
            f"{r['drift_slope_per_100_frames']:+.4f} ± {r['drift_slope_stderr']:.4f} | "
            f"{r['psnr_slope_per_100_frames']:+.3f} ± {r['psnr_slope_stderr']:.3f} |"
        )
    return header + "\n".join(rows) + "\n"
