"""LEO's plots: motion-code norm over time, and rendered-video measures by distance."""

from __future__ import annotations

import numpy as np

from anchored_jax.evaluation.curve_plots import write_line_plot


def norm_series(alpha_BTM, block: int = 8):
    """(block start, mean ||alpha_t||, mean ||alpha_t - alpha_1||) over sequences and blocks."""
    alpha = np.asarray(alpha_BTM, np.float64)
    norm_T = np.linalg.norm(alpha, axis=-1).mean(0)
    drift_T = np.linalg.norm(alpha - alpha[:, :1], axis=-1).mean(0)
    starts = np.arange(0, len(norm_T), block)
    mean = lambda v: np.array([v[s : s + block].mean() for s in starts])  # noqa: E731
    return starts, mean(norm_T), mean(drift_T)


def write_norm_plot(path: str, codes_by_method: dict, title: str) -> np.ndarray:
    """||alpha_t|| and the drift ||alpha_t - alpha_1|| of each method's codes `[B, T, M]`."""
    series = {}
    for name, codes in codes_by_method.items():
        t, norm, drift = norm_series(codes)
        series[f"{name} |a_t|"] = (t, norm)
        series[f"{name} |a_t - a_1|"] = (t, drift)
    return write_line_plot(
        path, series, title=title, xlabel="frame t", ylabel="mean norm (8-frame blocks)",
        size=(1000, 480),
    )  # fmt: skip


def write_distance_plot(path: str, summaries: dict, measure: str, *, title: str,
                        ylabel: str) -> np.ndarray:  # fmt: skip
    """One `leo_video_metrics.video_summary` curve per video, against distance (log x)."""
    series = {
        name: (s["curves"][measure]["distance"], s["curves"][measure]["mean"])
        for name, s in summaries.items()
    }
    return write_line_plot(
        path, series, title=title, xlabel="distance from frame 0 (frames)", ylabel=ylabel,
        log_x=True,
    )  # fmt: skip
