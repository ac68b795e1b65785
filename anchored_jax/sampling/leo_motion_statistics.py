"""How generated long motion-code sequences compare with real ones: the LMDM's report card.

Every number is over `[B, T, M]` codes (B sequences of T steps of M magnitudes):

- step sizes |alpha_{t+1} - alpha_t| (mean and std over every step and magnitude);
- the drift ||alpha_t - alpha_1||: its mean and std, and its mean per time window, which is
  where a drifting chain (growing) or a restarting sampler (stuck near 0) shows;
- joins: the step size where blocks of L-1 steps meet, over the step size within blocks;
- the saw-tooth of the drift: the mean drift at each phase of the L-1-step block; a sampler
  that restarts from alpha_1 every block has small drift at the start of every block.

`long_motion_report(real, generated, length)` gives all of them plus the relative error of
each generated statistic against the real one.
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


def long_motion_report(real_BTM, generated: dict, length: int) -> dict:
    """`{"real": summary, name: summary + relative errors}` for each generated set."""
    real = motion_summary(real_BTM, length)
    report = {"real": real}
    for name, alpha_BTM in generated.items():
        summary = motion_summary(alpha_BTM, length)
        for key in ("delta_mean", "delta_std", "drift_mean", "drift_std", "norm_mean"):
            summary[f"{key}_rel_error"] = summary[key] / real[key] - 1.0
        summary["drift_window_rel_error"] = [
            g / r - 1.0 for g, r in zip(summary["drift_window_mean"], real["drift_window_mean"])
        ]
        report[name] = summary
    return report
