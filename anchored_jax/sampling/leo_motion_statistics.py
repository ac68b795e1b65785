"""How generated long motion-code sequences compare with real ones: the LMDM's report card.

Every number is over `[B, T, M]` codes (B sequences of T steps of M magnitudes):

- step sizes |alpha_{t+1} - alpha_t| (mean and std over every step and magnitude);
- the drift ||alpha_t - alpha_1||: its mean and std, and its mean per time window, which is
  where a drifting chain (growing) or a restarting sampler (stuck near 0) shows;
- joins: the step size where blocks of L-1 steps meet, over the step size within blocks;
- the saw-tooth of the drift: the mean drift at each phase of the L-1-step block; a sampler
  that restarts from alpha_1 every block has small drift at the start of every block.

`long_motion_report(real, generated, length)` gives all of them plus the relative error of
each generated statistic against the real one, and a 90% interval of each of the four step and
drift errors from a paired bootstrap over the sequences (generated sequence i starts from real
sequence i's first code, so both are resampled with the same indices). Motion speed varies
from video to video: over 8 videos the interval is about ±10%, so a 10% target needs more.
"""

from __future__ import annotations

import numpy as np

from anchored_jax.sampling.leo_anchored_motion import join_statistics


def drift_BT(alpha_BTM) -> np.ndarray:
    alpha = np.asarray(alpha_BTM, np.float64)
    return np.linalg.norm(alpha - alpha[:, :1], axis=-1)


def sawtooth_amplitude(alpha_BTM, length: int) -> float:
    """(max - min) / mean of the mean drift by phase within L-1-step blocks (steps >= L).

    0 for motion that does not know where the blocks are; near 1 when every block restarts
    from alpha_1. The first block is left out (every sequence starts at drift 0 there).
    """
    drift = drift_BT(alpha_BTM)[:, length:]
    if drift.shape[1] < length - 1:
        return 0.0
    phase = np.arange(drift.shape[1]) % (length - 1)
    by_phase = np.array([drift[:, phase == p].mean() for p in range(length - 1)])
    return float((by_phase.max() - by_phase.min()) / max(by_phase.mean(), 1e-12))


def motion_summary(alpha_BTM, length: int, num_windows: int = 8) -> dict:
    """Step-size, drift, join and saw-tooth statistics of one set of sequences."""
    alpha = np.asarray(alpha_BTM, np.float64)
    delta = np.abs(np.diff(alpha, axis=1))
    drift = drift_BT(alpha)
    windows = np.array_split(np.arange(alpha.shape[1]), min(num_windows, alpha.shape[1]))
    joins = join_statistics(alpha, length)
    return {
        "delta_mean": float(delta.mean()),
        "delta_std": float(delta.std()),
        "drift_mean": float(drift.mean()),
        "drift_std": float(drift.std()),
        "drift_window_mean": [float(drift[:, w].mean()) for w in windows],
        "norm_mean": float(np.linalg.norm(alpha, axis=-1).mean()),
        **joins,
        "join_ratio": joins["join_delta_mean"] / max(joins["within_delta_mean"], 1e-12),
        "sawtooth": sawtooth_amplitude(alpha, length),
    }


BOOTSTRAPPED = ("delta_mean", "delta_std", "drift_mean", "drift_std")


def _moments_B(alpha_BTM) -> dict:
    """Per sequence: the sum and the sum of squares of its step sizes and of its drift, and
    their counts, from which any resampling of the sequences gives means and stds at once."""
    alpha = np.asarray(alpha_BTM, np.float64)
    delta = np.abs(np.diff(alpha, axis=1)).reshape(len(alpha), -1)
    drift = drift_BT(alpha)
    return {
        name: (x.sum(1), np.square(x).sum(1), x.shape[1])
        for name, x in (("delta", delta), ("drift", drift))
    }


def _resampled(moments: dict, idx_DB) -> dict:
    """Mean and std of step sizes and drift over the sequences `idx_DB` (D draws)."""
    out = {}
    for name, (total_B, squares_B, count) in moments.items():
        n = idx_DB.shape[1] * count
        mean = total_B[idx_DB].sum(1) / n
        out[f"{name}_mean"] = mean
        out[f"{name}_std"] = np.sqrt(np.maximum(squares_B[idx_DB].sum(1) / n - mean**2, 0.0))
    return out


def bootstrap_rel_errors(real_BTM, alpha_BTM, *, draws: int = 1000, seed: int = 0) -> dict:
    """`{statistic: [5th, 95th percentile]}` of the relative error of `alpha_BTM`'s step and
    drift statistics against `real_BTM`'s, over `draws` paired resamplings of the sequences."""
    if len(real_BTM) != len(alpha_BTM):
        raise ValueError(
            f"paired bootstrap: expected as many generated as real sequences, got "
            f"{len(alpha_BTM)} and {len(real_BTM)}"
        )
    idx_DB = np.random.default_rng(seed).integers(0, len(real_BTM), (draws, len(real_BTM)))
    real = _resampled(_moments_B(real_BTM), idx_DB)
    generated = _resampled(_moments_B(alpha_BTM), idx_DB)
    return {
        key: np.percentile(generated[key] / real[key] - 1.0, [5, 95]).tolist()
        for key in BOOTSTRAPPED
    }


def long_motion_report(real_BTM, generated: dict, length: int) -> dict:
    """`{"real": summary, name: summary + relative errors + their 90% intervals}` for each
    generated set (`<statistic>_rel_error_interval`, for `BOOTSTRAPPED`)."""
    real = motion_summary(real_BTM, length)
    report = {"real": real}
    for name, alpha_BTM in generated.items():
        summary = motion_summary(alpha_BTM, length)
        for key in ("delta_mean", "delta_std", "drift_mean", "drift_std", "norm_mean"):
            summary[f"{key}_rel_error"] = summary[key] / real[key] - 1.0
        intervals = bootstrap_rel_errors(real_BTM, alpha_BTM)
        for key in BOOTSTRAPPED:
            summary[f"{key}_rel_error_interval"] = intervals[key]
        summary["drift_window_rel_error"] = [
            g / r - 1.0 for g, r in zip(summary["drift_window_mean"], real["drift_window_mean"])
        ]
        report[name] = summary
    return report


def relative_error_text(row: dict, key: str) -> str:
    """ "-9.1% [-15.0, -1.1]": a `long_motion_report` row's relative error of `key` and its 90%
    paired-bootstrap interval, in percent."""
    low, high = row[f"{key}_rel_error_interval"]
    return f"{100 * row[key + '_rel_error']:+.1f}% [{100 * low:+.1f}, {100 * high:+.1f}]"
