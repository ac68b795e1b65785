"""SSIM per image, in JAX, computed exactly as scikit-image's `structural_similarity`.

The reference is `skimage.metrics.structural_similarity(x, y, channel_axis=-1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R)`, the setting of
Wang et al. 2004 that papers report: an 11-tap Gaussian window (sigma 1.5, truncated at 3.5
sigma), population covariances, K1 = 0.01, K2 = 0.03, the SSIM map averaged over the pixels
at least 5 from the border, then over the channels. scikit-image filters the whole image with
reflected borders and then crops those 5 pixels; the pixels it keeps never see the padding,
so a 'valid' filter here gives the same numbers without padding.
`tests/evaluation/test_image_metrics.py` checks the match to 1e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np

SIGMA = 1.5
TRUNCATE = 3.5  # scikit-image's window for gaussian_weights=True
K1, K2 = 0.01, 0.03


def gaussian_taps(sigma: float = SIGMA, truncate: float = TRUNCATE) -> np.ndarray:
    """The normalised 1-D Gaussian of `scipy.ndimage.gaussian_filter` (radius int(t*s + 0.5))."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _blur_valid(a_NHWC: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable Gaussian filter keeping only outputs whose window lies inside the image.

    Shifted slices rather than a depthwise conv, which XLA runs ~8x slower on CPU.
    """
    k = len(taps)
    h, w = a_NHWC.shape[1] - k + 1, a_NHWC.shape[2] - k + 1
    a_NhWC = sum(float(taps[i]) * a_NHWC[:, i : i + h] for i in range(k))
    return sum(float(taps[i]) * a_NhWC[:, :, i : i + w] for i in range(k))


def ssim(x_NHWC: jax.Array, y_NHWC: jax.Array, *, data_range: float) -> jax.Array:
    """Mean SSIM of each image pair, `[N]`; channels are averaged like skimage's channel_axis.

    `data_range` is the span of valid values (2.0 for [-1, 1], 255.0 for uint8 pixels). Works
    under jit, with `data_range` static or traced.
    """
    if x_NHWC.shape != y_NHWC.shape or x_NHWC.ndim != 4:
        raise ValueError(
            f"ssim: expected two image batches [N, H, W, C] of one shape, got {x_NHWC.shape} "
            f"and {y_NHWC.shape}"
        )
    side = len(gaussian_taps())
    if min(x_NHWC.shape[1:3]) < side:
        raise ValueError(
            f"ssim: expected images of at least {side}x{side} pixels (the Gaussian window), "
            f"got {x_NHWC.shape[1]}x{x_NHWC.shape[2]}"
        )
    return _ssim_N(x_NHWC, y_NHWC, data_range)


@jax.jit  # one compiled program per shape, also when called eagerly
def _ssim_N(x_NHWC: jax.Array, y_NHWC: jax.Array, data_range) -> jax.Array:
    taps = gaussian_taps()
    # SSIM is unchanged when the images and the constants' range are scaled together, and
    # the (co)variances E[xy] - E[x]E[y] when both images are shifted together: on the unit
    # range and centred on the pair's mean, float32 loses far fewer digits to cancellation.
    x = jnp.asarray(x_NHWC, jnp.float32) / data_range
    y = jnp.asarray(y_NHWC, jnp.float32) / data_range
    centre_N11C = 0.5 * (x.mean(axis=(1, 2), keepdims=True) + y.mean(axis=(1, 2), keepdims=True))
    x, y = x - centre_N11C, y - centre_N11C
    # The five local moments in one filter pass, stacked on the channel axis.
    moments = _blur_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps)
    m_x, m_y, e_xx, e_yy, e_xy = jnp.split(moments, 5, axis=-1)
    var_x = e_xx - m_x * m_x
    var_y = e_yy - m_y * m_y
    cov_xy = e_xy - m_x * m_y
    mu_x, mu_y = m_x + centre_N11C, m_y + centre_N11C
    c1, c2 = K1**2, K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(axis=(1, 2, 3))
