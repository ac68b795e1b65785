"""PSNR distance bins, the quarter change, sharpness and flicker ratios, seeds' mean and std."""

import numpy as np

from anchored_jax.evaluation.distance_bins import binned_means, log_binned_curve, quarter_change
from anchored_jax.evaluation.seed_statistics import across_seeds
from anchored_jax.evaluation.video_statistics import flicker_T, laplacian_T, ratio


def test_distance_bins_hold_their_frames_and_omit_empty_bins():
    distance = np.arange(1, 600)
    values = np.where(distance <= 32, 30.0, np.where(distance <= 128, 20.0, 10.0))
    values[distance > 512] = 5.0
    assert binned_means(distance, values) == {
        "1-32": 30.0, "33-128": 20.0, "129-512": 10.0, "513+": 5.0
    }  # fmt: skip
    short = np.arange(1, 64)
    assert set(binned_means(short, short)) == {"1-32", "33-128"}
    np.testing.assert_allclose(binned_means(short, short)["33-128"], np.mean(np.arange(33, 64)))


def test_quarter_change_is_last_minus_first_quarter():
    # Frames 1..8 hold their own index: quarters [1,2] ... [7,8] -> 7.5 - 1.5.
    assert quarter_change(np.arange(9.0)) == 6.0
    assert quarter_change(np.full(20, 3.0)) == 0.0
    assert quarter_change(np.arange(4.0)) is None  # three frames after the anchor


def test_log_binned_curves_share_bins_across_seeds():
    d = np.arange(1, 512)
    x1, y1 = log_binned_curve(d, d * 0 + 1.0, 512)
    x2, y2 = log_binned_curve(d, d * 0 + 2.0, 512)
    assert x1 == x2 and len(x1) >= 8 and x1[0] == 1.0 and y1 == [1.0] * len(x1)
    assert np.all(np.diff(x1) > 0) and max(x1) > 300


def test_laplacian_and_the_two_ratios():
    checker = np.indices((8, 8)).sum(0) % 2 * 2.0 - 1.0  # +-1: |4c - 4(-c)| = 8 everywhere
    video = np.broadcast_to(checker[None, :, :, None], (3, 8, 8, 3))
    np.testing.assert_allclose(laplacian_T(video), [8.0, 8.0, 8.0])
    np.testing.assert_allclose(laplacian_T(np.ones((2, 8, 8, 3))), 0.0)
    blurred = 0.25 * video
    assert ratio([laplacian_T(blurred)], [laplacian_T(video)]) == 0.25
    steps = np.arange(5.0)[:, None, None, None] * np.ones((5, 4, 4, 3))
    np.testing.assert_allclose(flicker_T(steps), [1.0, 1.0, 1.0])  # off the anchor: 3 pairs
    assert ratio([flicker_T(2 * steps)], [flicker_T(steps)]) == 2.0
    assert ratio([flicker_T(steps)], [np.zeros(3)]) is None


def test_mean_and_std_over_seeds():
    rows = [
        {"psnr": 20.0, "seam": None, "bins": {"1-32": 21.0}, "curves": {"psnr": [[1, 2], [3, 5]]},
         "name": "x"},
        {"psnr": 22.0, "seam": 1.5, "bins": {"1-32": 23.0}, "curves": {"psnr": [[1, 2], [5, 5]]},
         "name": "x"},
    ]  # fmt: skip
    mean, std = across_seeds(rows)
    assert mean["psnr"] == 21.0 and np.isclose(std["psnr"], np.std([20, 22], ddof=1))
    assert mean["seam"] is None and mean["bins"] == {"1-32": 22.0} and "name" not in mean
    assert mean["curves"]["psnr"] == [[1, 2], [4.0, 5.0]]
    np.testing.assert_allclose(std["curves"]["psnr"][1], [np.sqrt(2), 0.0])
    one_mean, one_std = across_seeds(rows[1:])
    assert one_mean["psnr"] == 22.0 and one_std["psnr"] == 0.0
