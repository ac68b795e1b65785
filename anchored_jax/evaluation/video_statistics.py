"""Sharpness and flicker of a generated video, each as a ratio to the real video's.

Two failure modes that per-frame fidelity rewards rather than punishes: a sampler that blurs
(averages its guesses) gains PSNR, and one that jitters from frame to frame loses little.
Dividing by the real clip's value makes both readable at a glance (1 = like the real video):

- sharpness: the mean |4-neighbour Laplacian| over the interior pixels of frames 1..T-1; below 1
  is blurrier than the real frames;
- flicker: the mean absolute change between consecutive frames among 1..T-1; above 1 changes
  more from frame to frame than the real video does.
"""

from __future__ import annotations

import numpy as np

from anchored_jax.evaluation.segment_metrics import frame_change_T


def laplacian_T(video_THWC: np.ndarray) -> np.ndarray:
    """Mean |4x[i,j] - x[i-1,j] - x[i+1,j] - x[i,j-1] - x[i,j+1]| per frame, interior only."""
    x = np.asarray(video_THWC, np.float64)
    centre = x[:, 1:-1, 1:-1]
    lap = 4 * centre - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return np.abs(lap).mean(axis=(1, 2, 3))


def flicker_T(video_THWC: np.ndarray) -> np.ndarray:
    """Consecutive-frame change among frames 1..T-1 (off the anchor): `[T-2]`."""
    return frame_change_T(np.asarray(video_THWC)[1:])


def ratio(generated: list[np.ndarray], real: list[np.ndarray]) -> float | None:
    """Mean of the pooled generated values / mean of the pooled real ones (None if 0 or empty)."""
    g, r = np.concatenate(generated), np.concatenate(real)
    if not g.size or not r.size or r.mean() == 0:
        return None
    return float(g.mean() / r.mean())
