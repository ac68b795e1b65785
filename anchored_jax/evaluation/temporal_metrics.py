"""Frame-to-frame consistency of a video: how much it changes, and whether it changes as the truth.

`consecutive_difference` is the mean absolute change between neighbouring frames (flicker
shows as spikes); `temporal_difference_error` compares those changes with the ground truth's,
mean |(g[t+1] - g[t]) - (r[t+1] - r[t])|, so a video that moves like the reference scores 0
even when its appearance differs by a constant. Both are per frame pair, `[T-1]`, in the
units of the input, and work under jit. The drift curve against the anchor lives in
`consistency_metrics.py`.
"""

import jax
import jax.numpy as jnp


def _check_video(name: str, video_THWC) -> None:
    if video_THWC.ndim != 4 or video_THWC.shape[0] < 2:
        raise ValueError(
            f"{name}: expected a video [T, H, W, C] with T >= 2, got shape {video_THWC.shape}"
        )


def consecutive_difference(video_THWC) -> jax.Array:
    """Mean |v[t+1] - v[t]| over pixels and channels, `[T-1]`."""
    _check_video("consecutive_difference", video_THWC)
    v = jnp.asarray(video_THWC, jnp.float32)
    return jnp.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))


def temporal_difference_error(gen_THWC, ref_THWC) -> jax.Array:
    """Mean |(g[t+1] - g[t]) - (r[t+1] - r[t])| over pixels and channels, `[T-1]`."""
    _check_video("temporal_difference_error", gen_THWC)
    if gen_THWC.shape != ref_THWC.shape:
        raise ValueError(
            f"temporal_difference_error: expected two videos of one shape, got "
            f"{gen_THWC.shape} and {ref_THWC.shape}"
        )
    g = jnp.asarray(gen_THWC, jnp.float32)
    r = jnp.asarray(ref_THWC, jnp.float32)
    return jnp.abs((g[1:] - g[:-1]) - (r[1:] - r[:-1])).mean(axis=(1, 2, 3))
