"""Consistency metrics against closed-form values, and the study's pooling, table and plot."""

import numpy as np
from PIL import Image

from anchored_jax.evaluation.consistency_metrics import (
    appearance_drift_T,
    face_boxes_T4,
    fit_slope,
    landmark_motion_px_T,
    psnr_T,
    ssim_T,
)
from anchored_jax.evaluation.consistency_study import (
    binned_curve,
    frame_metrics,
    markdown_table,
    summarize,
)
from anchored_jax.evaluation.curve_plots import write_line_plot


def test_psnr_and_ssim_match_closed_forms():
    target = np.zeros((2, 16, 16, 3), np.float32)
    pred = target.copy()
    pred[1] += 0.2  # MSE 0.04 on a peak-to-peak range of 2: 10 log10(4 / 0.04) = 20 dB
    np.testing.assert_allclose(psnr_T(pred, target), [100.0, 20.0], atol=1e-6)
    # Constant frames a, b in [0, 1] units: SSIM = (2ab + c1) / (a^2 + b^2 + c1).
    a, b = 0.5, 0.6  # -> [-1, 1] values 0.0 and 0.2
    c1 = 0.01**2
    np.testing.assert_allclose(  # SSIM is computed in float32
        ssim_T(pred, target), [1.0, (2 * a * b + c1) / (a * a + b * b + c1)], atol=1e-5
    )
    rng = np.random.default_rng(0)
    noisy = np.clip(target + rng.normal(0, 0.3, target.shape), -1, 1)
    assert ssim_T(noisy, target).max() < 0.5 < ssim_T(target + 0.05, target).min()


def test_drift_sees_colour_shifts_inside_the_face_box_only():
    rng = np.random.default_rng(1)
    source = rng.uniform(-0.5, 0.5, (32, 32, 3))
    landmarks = np.zeros((3, 5, 3))
    landmarks[..., 0] = np.linspace(0.25, 0.5, 5)  # box x in [~0.22, 0.53]
    landmarks[..., 1] = np.linspace(0.25, 0.5, 5)
    video = np.stack([source, source.copy(), source.copy()])
    video[1, 0:4, 0:4] += 0.7  # outside the face box: no drift
    y0, y1, x0, x1 = face_boxes_T4(landmarks, 32)[2]
    video[2, y0:y1, x0:x1] += 0.1  # a uniform colour shift of the whole face region
    drift = appearance_drift_T(video, landmarks, source, landmarks[0])
    np.testing.assert_allclose(drift, [0.0, 0.0, 0.1 * np.sqrt(3)], atol=1e-9)


def test_slope_fit_and_motion():
    x = np.arange(100.0)
    slope, stderr = fit_slope(x, 0.5 * x + 3.0)
    assert abs(slope - 0.5) < 1e-9 and stderr < 1e-9
    noise = np.random.default_rng(2).normal(0, 1.0, 100)
    slope, stderr = fit_slope(x, noise)
    assert abs(slope) < 3 * stderr and 0.001 < stderr < 0.01
    lm = np.zeros((2, 4, 3))
    lm[1, :, 0] = 0.1
    np.testing.assert_allclose(landmark_motion_px_T(lm, 32), [0.0, 3.2])


def test_summary_pools_clips_fits_slopes_and_writes_a_table_and_plot(tmp_path):
    rng = np.random.default_rng(3)
    T = 40
    real = rng.uniform(-0.8, 0.8, (T, 16, 16, 3))
    lm = np.tile(rng.uniform(0.3, 0.7, (1, 6, 3)), (T, 1, 1))
    lm[:, :, 0] += np.linspace(0, 0.2, T)[:, None]  # the face moves right over time
    # A drifting generator: every frame a little brighter than the last.
    drifting = np.clip(real + np.linspace(0, 0.5, T)[:, None, None, None], -1, 1)
    records = {
        "steady": [frame_metrics(real, real, lm)],
        "drifting": [frame_metrics(drifting, real, lm)],
    }
    summary = summarize(records, num_bins=4)
    assert summary["steady"]["frames"] == T - 1  # the anchor frame is left out
    assert summary["steady"]["drift_slope_per_100_frames"] > 0  # real motion moves the box
    assert (
        summary["drifting"]["drift_slope_per_100_frames"]
        > summary["steady"]["drift_slope_per_100_frames"] + 0.5
    )
    assert summary["drifting"]["psnr_slope_per_100_frames"] < -10
    centres, means = binned_curve(np.arange(1.0, 41.0), np.arange(1.0, 41.0), 4)
    np.testing.assert_allclose(centres, means)
    assert len(centres) == 4
    table = markdown_table(summary)
    assert table.count("\n| ") == 2 and "| drifting |" in table
    path = str(tmp_path / "plot.png")
    series = {m: tuple(map(np.asarray, r["curves"]["psnr"])) for m, r in summary.items()}
    write_line_plot(path, series, title="t", xlabel="x", ylabel="y")
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (440, 720, 3)
    # Both series' colours (matplotlib's first two, C0 and C1) were drawn.
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert np.all(pixels == colour, axis=-1).sum() > 20
