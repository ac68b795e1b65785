"""AKD, missing-keypoint rate and the temporal metrics against closed forms."""

import jax
import numpy as np
import pytest

from anchored_jax.evaluation.keypoint_metrics import (
    average_keypoint_distance,
    landmark_extractor,
    missing_keypoint_rate,
)
from anchored_jax.evaluation.temporal_metrics import (
    consecutive_difference,
    temporal_difference_error,
)
from data_pipelines.face_models import missing_reason


def test_akd_is_the_mean_pixel_distance():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.8, (4, 68, 3)).astype(np.float32)
    pred = ref.copy()
    # On a 100 (high) x 200 (wide) frame, (dx, dy) = (0.015, 0.04) is (3, 4) px: 5 px apart.
    pred[:, :34, 0] += 0.015
    pred[:, :34, 1] += 0.04
    pred[..., 2] += 0.3  # depth is not part of the distance
    assert average_keypoint_distance(pred, ref, (100, 200)) == pytest.approx(2.5, abs=1e-4)
    assert average_keypoint_distance(pred[:, :34], ref[:, :34], (100, 200)) == pytest.approx(
        5.0, abs=1e-4
    )
    # Square frames of side 256: a shift of 0.5 / 256 in x is half a pixel.
    shifted = ref.copy()
    shifted[..., 0] += 0.5 / 256
    assert average_keypoint_distance(shifted, ref, 256) == pytest.approx(0.5, abs=1e-4)


def test_akd_skips_missing_points_and_mkr_counts_them():
    ref = np.full((4, 10, 2), 0.5)
    pred = ref + np.array([0.1, 0.0])  # 10 px on a 100 px frame
    pred[1] = np.nan  # no face on output frame 1
    pred[2, :5] = 10.0 + 0.5  # 1000 px off, but its reference points are missing below
    ref[2, :5] = np.nan
    assert average_keypoint_distance(pred, ref, 100) == pytest.approx(10.0)
    # Missing on the output where the reference has them: frame 1's 10 of 35 reference points.
    assert missing_keypoint_rate(pred, ref) == pytest.approx(10 / 35)
    none = np.full_like(ref, np.nan)
    assert np.isnan(average_keypoint_distance(none, ref, 100))
    assert np.isnan(missing_keypoint_rate(pred, none))
    with pytest.raises(ValueError, match=r"keypoints: expected two landmark arrays"):
        average_keypoint_distance(pred[:3], ref, 100)


def test_landmark_extractor_is_mediapipe_or_one_line_reason():
    extractor = landmark_extractor("mediapipe")
    if missing_reason() is not None:
        assert isinstance(extractor, str) and "\n" not in extractor
        assert "python -m data_pipelines.face_models" in extractor
    else:
        frames = np.zeros((2, 64, 64, 3), np.uint8)
        assert extractor(frames).shape == (2, 468, 2)
    with pytest.raises(ValueError, match=r"landmark extractor: expected one of"):
        landmark_extractor("dlib")


def test_consecutive_difference_closed_form():
    # Frames of constant value 10 t in uint8: each step changes every pixel by 10.
    video = (10 * np.arange(5, dtype=np.uint8)).reshape(5, 1, 1, 1) * np.ones((1, 4, 6, 3))
    np.testing.assert_allclose(consecutive_difference(video.astype(np.uint8)), [10.0] * 4)
    # Decreasing uint8 values must not wrap around.
    down = video[::-1].astype(np.uint8)
    np.testing.assert_allclose(consecutive_difference(down), [10.0] * 4)
    still = np.zeros((3, 4, 4, 3), np.float32)
    np.testing.assert_allclose(jax.jit(consecutive_difference)(still), [0.0, 0.0])


def test_temporal_difference_error_closed_form():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    # An offset copy changes exactly as the reference does: zero error.
    np.testing.assert_allclose(temporal_difference_error(ref + 0.3, ref), [0.0] * 4, atol=1e-6)
    # Frame 2 flickers by +0.4 on half the pixels: the pairs (1, 2) and (2, 3) see 0.2 each.
    gen = ref.copy()
    gen[2, :4] += 0.4
    np.testing.assert_allclose(
        jax.jit(temporal_difference_error)(gen, ref), [0.0, 0.2, 0.2, 0.0], atol=1e-6
    )
    with pytest.raises(ValueError, match=r"expected two videos of one shape"):
        temporal_difference_error(gen[:4], ref)
    with pytest.raises(ValueError, match=r"T >= 2"):
        consecutive_difference(ref[:1])
