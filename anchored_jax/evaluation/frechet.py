"""The Fréchet distance between two Gaussians fitted to features: the core of FID and FVD.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

The trace of the matrix square root is computed from eigenvalues rather than with
`scipy.linalg.sqrtm`: tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of
the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which `eigh` gives stably in float64 even when a
covariance is singular (fewer samples than feature dimensions), where `sqrtm` returns complex
noise. Statistics follow pytorch-fid: the mean and the unbiased (ddof=1) covariance.
"""

import numpy as np


def feature_statistics(feats_ND) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of N feature vectors."""
    feats = np.asarray(feats_ND, np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"features: expected [N, D] with N >= 2, got shape {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], -1)


def _psd_sqrt(sigma_DD: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; round-off negative eigenvalues count as zero."""
    eigvals, eigvecs = np.linalg.eigh(sigma_DD)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[-1] if mu1.ndim == 1 else -1
    for name, value, shape in (
        ("mu2", mu2, (d,)),
        ("sigma1", sigma1, (d, d)),
        ("sigma2", sigma2, (d, d)),
    ):
        if d < 0 or value.shape != shape:
            raise ValueError(
                f"frechet_distance {name}: expected shape {shape} to match mu1 {mu1.shape}, "
                f"got {value.shape}"
            )
    # Symmetrise: covariances read from files or summed in float32 are only nearly symmetric.
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigvals = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sum(np.sqrt(np.clip(eigvals, 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
