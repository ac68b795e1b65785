"""The Fréchet distance against scipy's sqrtm reference and closed forms; FID/FVD wrappers."""

import numpy as np
import pytest
import scipy.linalg

from anchored_jax.evaluation.distribution_metrics import fid, fvd
from anchored_jax.evaluation.frechet import feature_statistics, frechet_distance


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_features(seed: int, n: int, d: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


def test_statistics_are_mean_and_unbiased_covariance():
    feats = random_features(0, 50, 6, 0.3)
    mu, sigma = feature_statistics(feats)
    centred = feats - feats.mean(axis=0)
    np.testing.assert_allclose(mu, feats.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-12)


def test_matches_scipy_on_random_features():
    stats_a = feature_statistics(random_features(1, 400, 24, 0.0))
    stats_b = feature_statistics(random_features(2, 300, 24, 0.5))
    ours = frechet_distance(*stats_a, *stats_b)
    reference = scipy_frechet(*stats_a, *stats_b)
    assert ours > 1.0
    np.testing.assert_allclose(ours, reference, rtol=1e-9)


def test_matches_scipy_on_near_singular_covariances():
    # Fewer samples than dimensions: both covariances have rank 19 of 32, the case where
    # FID on small sets lives and where sqrtm's result carries complex round-off.
    stats_a = feature_statistics(random_features(3, 20, 32, 0.0))
    stats_b = feature_statistics(random_features(4, 20, 32, 0.2))
    assert np.linalg.matrix_rank(stats_a[1]) == 19
    ours = frechet_distance(*stats_a, *stats_b)
    reference = scipy_frechet(*stats_a, *stats_b)
    np.testing.assert_allclose(ours, reference, rtol=1e-7)


def test_closed_forms():
    rng = np.random.default_rng(5)
    mu = rng.normal(size=8)
    sigma = np.cov(rng.normal(size=(40, 8)), rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-10
    # Diagonal covariances commute: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.1, 2.0, size=8), rng.uniform(0.1, 2.0, size=8)
    expected = np.sum((mu - 1.0) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu, np.diag(a), np.ones(8), np.diag(b))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_fid_and_fvd_are_the_frechet_distance_of_the_feature_sets():
    feats_a, feats_b = random_features(6, 64, 10, 0.0), random_features(7, 80, 10, 1.0)
    expected = frechet_distance(*feature_statistics(feats_a), *feature_statistics(feats_b))
    assert fid(feats_a, feats_b) == pytest.approx(expected, rel=1e-12)
    assert fvd(feats_a, feats_b) == pytest.approx(expected, rel=1e-12)
    assert abs(fid(feats_a, feats_a)) < 1e-9


def test_bad_input_gives_one_line_errors():
    with pytest.raises(
        ValueError, match=r"^fid: the two feature sets differ in width \(10 vs 9\)$"
    ):
        fid(np.zeros((4, 10)), np.zeros((4, 9)))
    with pytest.raises(ValueError, match=r"^fvd: features: expected \[N, D\] with N >= 2"):
        fvd(np.zeros((1, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"^frechet_distance sigma2: expected shape \(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
