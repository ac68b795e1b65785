"""PSNR against the distance from the anchor, as a few bins and as a first-to-last change.

The anchored claim is that quality does not decay with distance from the anchor (frame 0, the
source). A slope over all frames hides where the loss happens; these bins, chosen to separate
the model's training window (up to 32 frames) from what lies beyond it, show it directly:

- `binned_means`: the mean of a per-frame metric in the distance bins 1-32, 33-128, 129-512
  and 513+ frames (a bin holding no frame is left out);
- `quarter_change`: the mean over the last quarter of frames 1..T-1 minus the mean over the
  first quarter (split by time): negative when the video gets worse as it goes on.
"""

from __future__ import annotations

import numpy as np

# (label, first distance, last distance) in frames from the anchor; None: no upper end.
DISTANCE_BINS = (("1-32", 1, 32), ("33-128", 33, 128), ("129-512", 129, 512), ("513+", 513, None))


def binned_means(distance_N: np.ndarray, values_N: np.ndarray) -> dict[str, float]:
    """`{bin label: mean of values}` over the DISTANCE_BINS that hold at least one frame."""
    distance_N = np.asarray(distance_N)
    values_N = np.asarray(values_N, np.float64)
    out = {}
    for label, lo, hi in DISTANCE_BINS:
        inside = (distance_N >= lo) & (distance_N <= (np.inf if hi is None else hi))
        if inside.any():
            out[label] = float(values_N[inside].mean())
    return out


def quarter_change(values_T: np.ndarray) -> float | None:
    """Mean of the last quarter of frames 1..T-1 minus that of the first; None below 4 frames."""
    values = np.asarray(values_T, np.float64)[1:]
    if len(values) < 4:
        return None
    quarters = np.array_split(values, 4)
    return float(quarters[-1].mean() - quarters[0].mean())


def log_binned_curve(
    distance_N: np.ndarray, values_N: np.ndarray, num_frames: int, num_bins: int = 12
) -> tuple[list[float], list[float]]:
    """Means in geometrically spaced distance bins over 1..num_frames-1, for a log-x plot.

    The edges depend only on `num_frames`, so curves of different seeds share their bins and
    can be averaged point by point. Returns (mean distance per bin, mean value per bin) for the
    bins holding a frame.
    """
    edges = np.unique(np.round(np.geomspace(1, max(num_frames, 2), num_bins + 1)).astype(int))
    edges[-1] = max(edges[-1], num_frames)
    distance_N = np.asarray(distance_N, np.float64)
    values_N = np.asarray(values_N, np.float64)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (distance_N >= lo) & (distance_N < hi)
        if inside.any():
            centres.append(float(distance_N[inside].mean()))
            means.append(float(values_N[inside].mean()))
    return centres, means
