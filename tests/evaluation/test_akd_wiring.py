"""AKD and its floor through the metric suite, with a stand-in extractor of known error, and
with the synthetic-face landmark regressor once keypoint_metrics provides it."""

import numpy as np
import pytest

from anchored_jax.evaluation import keypoint_metrics, metric_suite
from anchored_jax.evaluation.segment_metrics import segment_owner_T
from anchored_jax.sampling.segment_plan import plan_segments
from data_pipelines.sources import SyntheticFaceSource

T, SIZE = 9, 32


def _clip():
    source = SyntheticFaceSource("test", num_identities=1, videos_per_identity=1, num_frames=T,
                                 image_size=SIZE, fps=25.0, seed=0)  # fmt: skip
    real = source.read_frames(0, np.arange(T)).astype(np.float32) / 127.5 - 1.0
    return real, source[0].landmarks_TLC[:T]


def test_floor_and_akd_with_an_extractor_of_known_error():
    real, landmarks = _clip()
    offset_px = 0.5

    def extractor(frames_NHWC):
        # The renderer's exact points, half a pixel to the right, for whichever frames 1..
        assert frames_NHWC.dtype == np.uint8 and len(frames_NHWC) == T - 1
        points = landmarks[1:, :, :2].copy()
        points[..., 0] += offset_px / SIZE
        return points

    suite = metric_suite.MetricSuite(landmarks=extractor)
    reference = metric_suite.reference_clip(suite, real, landmarks)
    copy = metric_suite.score_clip(suite, np.broadcast_to(real[:1], real.shape), real, landmarks)
    owner = segment_owner_T(plan_segments(T, 3, 0, "contiguous"))
    summary = metric_suite.summarize_suite({"copy_source": [copy]}, [reference], {}, owner)
    np.testing.assert_allclose(summary["real"]["akd_floor"], offset_px, rtol=1e-5)
    assert summary["methods"]["copy_source"]["akd"] == pytest.approx(0.0, abs=1e-9)
    assert summary["real"]["seam_ratio"] > 0 and summary["real"]["spread"] >= 0


def test_a_floor_needs_the_same_points_on_both_sides():
    real, landmarks = _clip()
    suite = metric_suite.MetricSuite(landmarks=lambda f: np.zeros((len(f), 468, 2), np.float32))
    reference = metric_suite.reference_clip(suite, real, landmarks)
    skipped = metric_suite.summarize_suite({}, [reference], {})["skipped"]
    assert skipped["akd_floor"].startswith("skipped: the extractor gives 468 points")


def test_an_unknown_extractor_is_skipped_with_its_reason():
    suite = metric_suite.build_suite(landmarks="synthetic")
    if "synthetic" in keypoint_metrics.EXTRACTORS:
        assert suite.landmarks is not None or "akd" in suite.skipped
    else:
        assert suite.skipped["akd"].startswith("skipped: keypoint_metrics has no 'synthetic'")


@pytest.mark.slow  # the regressor trains (or loads its cache) on first use
@pytest.mark.skipif(
    "synthetic" not in keypoint_metrics.EXTRACTORS,
    reason="keypoint_metrics.landmark_extractor('synthetic') has not landed yet",
)
def test_synthetic_regressor_floor_on_held_out_faces():
    real, landmarks = _clip()
    suite = metric_suite.build_suite(landmarks="synthetic")
    assert suite.landmarks is not None, suite.skipped.get("akd")
    reference = metric_suite.reference_clip(suite, real, landmarks)
    summary = metric_suite.summarize_suite({}, [reference], {})
    assert 0.0 <= summary["real"]["akd_floor"] < SIZE / 8  # pixels: a usable regressor
