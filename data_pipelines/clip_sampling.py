"""Non-uniform temporal clip sampling: which K frames of a video make one training clip.

Anchored Diffusion trains on clips at random, non-uniform spacing, with the frame times given
to the model (arXiv 2407.15153, abstract). The kinds here are the knob `data.sampler`:

- `uniform_stride`: the baseline; one random stride per clip, equally spaced frames.
- `random_subset`: a window of random length, its first frame (the anchor) plus K-1 frames
  drawn without replacement inside it; gaps are uneven.
- `loguniform_gaps`: K-1 integer gaps drawn log-uniformly, so short and long gaps are equally
  likely per octave.

Every kind returns sorted, distinct indices inside a window of [min_window, max_window]
frames (both bounds capped by the video length). For `uniform_stride` and `loguniform_gaps`
the window is the clip's span (last - first + 1); `random_subset` starts at its window's first
frame but need not reach its last, so its span may be shorter.
"""

import math

import numpy as np

SAMPLER_KINDS = ("uniform_stride", "random_subset", "loguniform_gaps")


def window_bounds(
    num_frames: int, clip_frames: int, *, min_window: int, max_window: int
) -> tuple[int, int]:
    """The inclusive range of clip spans (in frames) a video of `num_frames` allows."""
    if clip_frames < 1:
        raise ValueError(f"clip_frames: expected >= 1, got {clip_frames}")
    if clip_frames > num_frames:
        raise ValueError(
            f"clip_frames: a clip of {clip_frames} frames needs a video of at least that many "
            f"frames, got {num_frames}"
        )
    if max_window < clip_frames:
        raise ValueError(f"max_window: expected >= clip_frames ({clip_frames}), got {max_window}")
    if min_window > max_window:
        raise ValueError(f"min_window: expected <= max_window ({max_window}), got {min_window}")
    hi = min(max_window, num_frames)
    # A video shorter than min_window still yields clips: they span the whole video.
    lo = min(max(clip_frames, min_window), hi)
    return lo, hi


def _uniform_stride(rng, num_frames, k, lo, hi):
    # Spans of the form (k-1)*s + 1; when no stride lands inside [lo, hi] take the largest
    # stride that fits, which is the closest span from below.
    s_lo = max(1, math.ceil((lo - 1) / (k - 1)))
    s_hi = max(1, (hi - 1) // (k - 1))
    stride = int(rng.integers(min(s_lo, s_hi), s_hi + 1))
    span = (k - 1) * stride + 1
    start = int(rng.integers(0, num_frames - span + 1))
    return start + stride * np.arange(k)


def _random_subset(rng, num_frames, k, lo, hi):
    window = int(rng.integers(lo, hi + 1))
    start = int(rng.integers(0, num_frames - window + 1))
    others = rng.choice(np.arange(1, window), size=k - 1, replace=False)
    return start + np.concatenate([[0], np.sort(others)])


def _loguniform_gaps(rng, num_frames, k, lo, hi):
    # Gaps in [g_lo, g_hi]: g_hi keeps the span <= hi, g_lo keeps it >= lo (g_lo is 1 whenever
    # min_window <= clip_frames, the common case).
    g_hi = (hi - 1) // (k - 1)
    g_lo = min(max(1, math.ceil((lo - 1) / (k - 1))), g_hi)
    # floor(exp(U[log g_lo, log(g_hi + 1)))) is the discrete log-uniform law:
    # P(gap <= g) = log((g + 1) / g_lo) / log((g_hi + 1) / g_lo).
    log_gaps = rng.uniform(math.log(g_lo), math.log(g_hi + 1), size=k - 1)
    gaps = np.clip(np.floor(np.exp(log_gaps)), g_lo, g_hi).astype(np.int64)
    span = int(gaps.sum()) + 1
    start = int(rng.integers(0, num_frames - span + 1))
    return start + np.concatenate([[0], np.cumsum(gaps)])


_SAMPLERS = {
    "uniform_stride": _uniform_stride,
    "random_subset": _random_subset,
    "loguniform_gaps": _loguniform_gaps,
}


def nonuniform_clip_indices(
    rng: np.random.Generator,
    num_frames: int,
    clip_frames: int,
    kind: str,
    *,
    min_window: int,
    max_window: int,
) -> np.ndarray:
    """Returns `clip_frames` sorted, distinct int32 frame indices into a `num_frames` video."""
    if kind not in _SAMPLERS:
        raise ValueError(f"data.sampler: expected one of {list(SAMPLER_KINDS)}, got {kind!r}")
    lo, hi = window_bounds(num_frames, clip_frames, min_window=min_window, max_window=max_window)
    if clip_frames == 1:
        return np.array([rng.integers(0, num_frames)], dtype=np.int32)
    indices_K = _SAMPLERS[kind](rng, num_frames, clip_frames, lo, hi)
    return indices_K.astype(np.int32)


def clip_times(indices: np.ndarray, fps: float) -> np.ndarray:
    """Seconds of each frame relative to the first frame of its clip (last axis is the clip)."""
    if fps <= 0:
        raise ValueError(f"fps: expected > 0, got {fps}")
    indices = np.asarray(indices)
    return ((indices - indices[..., :1]) / float(fps)).astype(np.float32)
