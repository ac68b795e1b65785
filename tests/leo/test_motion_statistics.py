"""The long-motion report: step sizes, drift, joins and the saw-tooth of restarting samplers."""

import numpy as np
import pytest

from anchored_jax.sampling.leo_motion_statistics import (
    _moments_B,
    _resampled,
    bootstrap_rel_errors,
    long_motion_report,
    sawtooth_amplitude,
)

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


def _walks(num_sequences, seed, num_frames=200):
    """Random walks whose speed varies from sequence to sequence, as videos' motion does."""
    rng = np.random.default_rng(seed)
    speed_B11 = rng.uniform(0.5, 1.5, (num_sequences, 1, 1))
    return np.cumsum(speed_B11 * rng.normal(size=(num_sequences, num_frames, 4)), axis=1)


def test_bootstrap_intervals_are_exact_for_a_scaled_copy():
    real = _walks(8, seed=0)
    intervals = bootstrap_rel_errors(real, 1.2 * real, draws=200)
    for key in ("delta_mean", "delta_std", "drift_mean", "drift_std"):
        np.testing.assert_allclose(intervals[key], [0.2, 0.2], atol=1e-9)
    report = long_motion_report(real, {"same": real}, L)
    assert report["same"]["drift_std_rel_error_interval"] == pytest.approx([0.0, 0.0], abs=1e-9)
    # The per-sequence moments give the report's own statistics on the unresampled set.
    whole = _resampled(_moments_B(real), np.arange(8)[None])
    for key in ("delta_mean", "delta_std", "drift_mean", "drift_std"):
        assert whole[key][0] == pytest.approx(report["real"][key], rel=1e-9)


def test_bootstrap_interval_holds_the_point_error_and_narrows_with_more_sequences():
    widths = {}
    for n in (8, 64):
        real, generated = _walks(n, seed=1), _walks(n, seed=2)
        report = long_motion_report(real, {"generated": generated}, L)["generated"]
        low, high = report["delta_mean_rel_error_interval"]
        assert low < report["delta_mean_rel_error"] < high
        widths[n] = high - low
    assert widths[64] < 0.6 * widths[8]  # ~1/sqrt(8) of it


def test_bootstrap_refuses_unpaired_sets():
    with pytest.raises(ValueError, match="as many generated as real"):
        bootstrap_rel_errors(_walks(4, 0), _walks(3, 0))
