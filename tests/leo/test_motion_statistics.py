"""The long-motion report: step sizes, drift, joins and the saw-tooth of restarting samplers."""

import numpy as np
import pytest

from anchored_jax.sampling.leo_motion_statistics import long_motion_report, sawtooth_amplitude

L = 6  # blocks of 5 steps


def _restarting(num_frames=101):
    """Every block of L-1 steps walks away from alpha_1 and the next starts over."""
    t = np.arange(num_frames)
    phase = (t - 1) % (L - 1) + 1
    return np.where(t == 0, 0.0, phase.astype(float))[None, :, None]


def _continuous(num_frames=101):
    t = np.arange(num_frames)
    return np.sin(2 * np.pi * t / 37.0)[None, :, None] * 3.0


def test_sawtooth_separates_restarting_from_continuous_motion():
    assert sawtooth_amplitude(_restarting(), L) == pytest.approx(4.0 / 3.0)  # phases 1..5
    assert sawtooth_amplitude(_continuous(401), L) < 0.05


def test_report_reference_values_and_relative_errors():
    real = _continuous()
    report = long_motion_report(real, {"same": real, "restart": _restarting()}, L)
    same = report["same"]
    assert same["delta_mean_rel_error"] == pytest.approx(0.0)
    assert same["drift_mean_rel_error"] == pytest.approx(0.0)
    restart = report["restart"]
    # Joins: 5 -> 1 (|4|) against within-block steps of 1 (and the first step 0 -> 1).
    assert restart["join_delta_mean"] == pytest.approx(4.0)
    assert restart["within_delta_mean"] == pytest.approx(1.0)
    assert restart["join_ratio"] == pytest.approx(4.0)
    drift = np.abs(_restarting()[0, :, 0])
    assert restart["drift_mean"] == pytest.approx(drift.mean())
    assert restart["drift_mean_rel_error"] == pytest.approx(
        drift.mean() / report["real"]["drift_mean"] - 1.0
    )
