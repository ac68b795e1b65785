"""SSIM against scikit-image's structural_similarity and against its closed form."""

import jax
import numpy as np
import pytest

from anchored_jax.evaluation.image_metrics import ssim
from data_pipelines.synthetic_faces import SyntheticVideo

metrics = pytest.importorskip("skimage.metrics")


def skimage_ssim(x_NHWC: np.ndarray, y_NHWC: np.ndarray, data_range: float) -> np.ndarray:
    """The reference setting: Gaussian window, population covariance, per-channel mean."""
    return np.array(
        [
            metrics.structural_similarity(
                a.astype(np.float64),
                b.astype(np.float64),
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=data_range,
            )
            for a, b in zip(x_NHWC, y_NHWC, strict=True)
        ]
    )


@pytest.mark.parametrize("shape", [(3, 24, 31, 3), (2, 11, 16, 1), (1, 40, 40, 4)])
def test_ssim_matches_skimage_on_random_images(shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    # From a near copy to near independence, so the SSIMs span most of [0, 1].
    noise = rng.normal(0, 1, shape) * np.linspace(0.05, 1.0, shape[0]).reshape(-1, 1, 1, 1)
    y = np.clip(x + noise, -1, 1).astype(np.float32)
    ours = np.asarray(ssim(x, y, data_range=2.0))
    reference = skimage_ssim(x, y, 2.0)
    assert ours.shape == (shape[0],)
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    if shape[0] > 1:
        assert np.all(np.diff(reference) < 0)  # more noise, lower SSIM


def test_ssim_matches_skimage_on_a_rendered_face():
    faces = SyntheticVideo(seed=0, identity_id=3, video_index=0, fps=25.0).frames(
        np.arange(0, 6, 3), 64
    )
    rng = np.random.default_rng(1)
    noisy = np.clip(faces + rng.normal(0, 12.0, faces.shape), 0, 255).astype(np.uint8)
    reference = skimage_ssim(faces, noisy, 255.0)
    ours = np.asarray(ssim(faces, noisy, data_range=255.0))
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    assert 0.3 < reference.min() and reference.max() < 0.95
    # The same frames in [-1, 1], as the models produce them (the luminance term depends on
    # the offset, so this is a different SSIM, checked against skimage on the same input).
    x, y = faces / 127.5 - 1.0, noisy / 127.5 - 1.0
    ours = np.asarray(ssim(x.astype(np.float32), y.astype(np.float32), data_range=2.0))
    np.testing.assert_allclose(ours, skimage_ssim(x, y, 2.0), atol=1e-4, rtol=0)


def test_ssim_closed_form_and_jit():
    # Constant images a and b (data range 1): variances vanish and SSIM = (2ab+c1)/(a²+b²+c1).
    a, b, c1 = 0.5, 0.6, 0.01**2
    x = np.full((2, 16, 16, 3), a, np.float32)
    y = np.stack([np.full((16, 16, 3), a), np.full((16, 16, 3), b)]).astype(np.float32)
    expected = [1.0, (2 * a * b + c1) / (a * a + b * b + c1)]  # 0.98361, float32: to 1e-5
    np.testing.assert_allclose(np.asarray(ssim(x, y, data_range=1.0)), expected, atol=1e-5)
    jitted = jax.jit(ssim, static_argnames="data_range")
    np.testing.assert_allclose(np.asarray(jitted(x, y, data_range=1.0)), expected, atol=1e-5)
    traced = jax.jit(lambda x, y, r: ssim(x, y, data_range=r))
    np.testing.assert_allclose(np.asarray(traced(x, y, 1.0)), expected, atol=1e-5)


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"ssim: expected images of at least 11x11"):
        ssim(np.zeros((1, 10, 16, 3)), np.zeros((1, 10, 16, 3)), data_range=2.0)
    with pytest.raises(ValueError, match=r"ssim: expected two image batches"):
        ssim(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 1)), data_range=2.0)
