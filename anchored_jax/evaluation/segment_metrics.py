"""Consistency between segments: seam ratio and the spread of segment colours.

Anchored sampling exists to make the S segments of a long video agree with each other. Per-
frame fidelity (PSNR, SSIM) cannot show that: independent segments can each match ground truth
equally well yet disagree where they meet. These two numbers look at the segments themselves,
using the plan's ownership of frames (`segment_owner_T`):

- seam ratio: the mean absolute frame change |x[t+1] - x[t]| across joins (consecutive frames,
  in time order, owned by different segments) divided by the mean change within segments.
  About 1 for a video whose segments agree (the real video gives the reference); above 1 when
  every join is a visible jump. It is undefined (None) when a plan has no joins or no
  within-segment pairs (a single segment, or a strided plan where every pair is a join);
- spread between segments: each segment's mean colour over the frames it owns, of the face box
  (the bounding box of the frame's landmarks) and of the background (everything outside the box
  widened by `margin_px`), then the standard deviation of those means across segments.
  Segments that each settle on their own identity, lighting or background colour spread out.

Everything here is plain numpy on frames `[T, H, W, C]` in any one range; frame 0 is the anchor
(owned by no segment) and never enters a join or a segment mean.
"""

from __future__ import annotations

import numpy as np

ANCHOR_OWNER = -1  # `segment_owner_T`'s value for the anchor frame
MARGIN_PX = 2  # the background starts this many pixels outside the face box


def segment_owner_T(plan) -> np.ndarray:
    """The segment that owns each frame, `int [T]`; the anchor frame gets ANCHOR_OWNER."""
    owner_T = np.full(plan.num_frames, ANCHOR_OWNER, np.int64)
    segment_SK = np.broadcast_to(np.arange(plan.num_segments)[:, None], plan.owned_SK.shape)
    owner_T[plan.frame_index_SK[plan.owned_SK]] = segment_SK[plan.owned_SK]
    return owner_T


def frame_change_T(video_THWC: np.ndarray) -> np.ndarray:
    """Mean absolute change from each frame to the next, `[T-1]` (float64)."""
    video = np.asarray(video_THWC, np.float64)
    return np.abs(np.diff(video, axis=0)).mean(axis=(1, 2, 3))


def join_masks(owner_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(join, within)`, bool `[T-1]` over the pairs (t, t+1) of two owned frames."""
    owner_T = np.asarray(owner_T)
    owned = (owner_T[:-1] != ANCHOR_OWNER) & (owner_T[1:] != ANCHOR_OWNER)
    differ = owner_T[:-1] != owner_T[1:]
    return owned & differ, owned & ~differ


def pooled_seam_ratio(changes: list[np.ndarray], owners: list[np.ndarray]) -> dict:
    """The seam ratio of several clips pooled (`frame_change_T` and owner of each clip).

    Returns `{"seam_ratio", "join_pairs", "within_pairs"}`; the ratio is None when either
    kind of pair is missing.
    """
    join_sum = within_sum = 0.0
    joins = within = 0
    for change_T1, owner_T in zip(changes, owners):
        join, inside = join_masks(owner_T)
        join_sum += float(change_T1[join].sum())
        within_sum += float(change_T1[inside].sum())
        joins += int(join.sum())
        within += int(inside.sum())
    ratio = None
    if joins and within and within_sum > 0:
        ratio = (join_sum / joins) / (within_sum / within)
    return dict(seam_ratio=ratio, join_pairs=joins, within_pairs=within)


def seam_ratio(video_THWC: np.ndarray, owner_T: np.ndarray) -> float | None:
    """Mean frame change at joins / within segments, for one video (None: undefined)."""
    return pooled_seam_ratio([frame_change_T(video_THWC)], [owner_T])["seam_ratio"]


def face_boxes_px_T4(landmarks_TLC: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel boxes `(y0, y1, x0, x1)` (end-exclusive) around each frame's landmarks.

    Landmarks hold x, y in [0, 1] of the width and height; NaN points are ignored, and a frame
    with none gets an empty box (all of it is background).
    """
    xy_TL2 = np.asarray(landmarks_TLC, np.float64)[..., :2]
    finite_TL = np.isfinite(xy_TL2).all(-1)
    present_T1 = finite_TL.any(-1)[:, None]
    lo = np.where(present_T1, np.where(finite_TL[..., None], xy_TL2, np.inf).min(axis=1), 0.0)
    hi = np.where(present_T1, np.where(finite_TL[..., None], xy_TL2, -np.inf).max(axis=1), 0.0)
    size = np.array([width, height], np.float64)
    lo_px = np.clip(np.floor(lo * size), 0, size).astype(int)
    hi_px = np.clip(np.ceil(hi * size), lo_px, size).astype(int)
    hi_px = np.where(present_T1, hi_px, lo_px)
    return np.stack([lo_px[:, 1], hi_px[:, 1], lo_px[:, 0], hi_px[:, 0]], axis=1)


def region_means_T23(
    video_THWC: np.ndarray, landmarks_TLC: np.ndarray, margin_px: int = MARGIN_PX
) -> np.ndarray:
    """Per frame, the mean colour of the face box and of the background: `[T, 2, C]`.

    Row 0 is the face box, row 1 the background (outside the box widened by `margin_px`, so
    hair and the blurred face edge count in neither). A region with no pixels is NaN.
    """
    video = np.asarray(video_THWC, np.float64)
    T, H, W, C = video.shape
    if len(landmarks_TLC) != T:
        raise ValueError(f"landmarks: expected {T} frames, got {len(landmarks_TLC)}")
    boxes = face_boxes_px_T4(landmarks_TLC, H, W)
    out = np.full((T, 2, C), np.nan)
    rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
    for t, (y0, y1, x0, x1) in enumerate(boxes):
        face = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
        grown = ((rows >= y0 - margin_px) & (rows < y1 + margin_px)
                 & (cols >= x0 - margin_px) & (cols < x1 + margin_px))  # fmt: skip
        if y1 <= y0 or x1 <= x0:  # no face: no box and no margin, all background
            grown = face
        for r, mask in enumerate((face, ~grown)):
            if mask.any():
                out[t, r] = video[t][mask].mean(axis=0)
    return out


def spread_from_means(means_T23: np.ndarray, owner_T: np.ndarray) -> dict:
    """Std across segments of each segment's mean region colour over the frames it owns.

    Returns `{"spread", "spread_face", "spread_background"}`: each region's per-channel std
    (population, ddof 0) averaged over channels, and the mean of the two regions; None with
    fewer than 2 segments.
    """
    owner_T = np.asarray(owner_T)
    segments = [s for s in np.unique(owner_T) if s != ANCHOR_OWNER]
    if len(segments) < 2:
        return dict(spread=None, spread_face=None, spread_background=None)
    seg_means_S23 = np.stack([np.nanmean(means_T23[owner_T == s], axis=0) for s in segments])
    std_2 = np.nanstd(seg_means_S23, axis=0).mean(axis=-1)
    return dict(
        spread=float(std_2.mean()), spread_face=float(std_2[0]), spread_background=float(std_2[1])
    )


def segment_spread(
    video_THWC: np.ndarray,
    landmarks_TLC: np.ndarray,
    owner_T: np.ndarray,
    margin_px: int = MARGIN_PX,
) -> dict:
    """The spread between segments of one video (see `spread_from_means`)."""
    return spread_from_means(region_means_T23(video_THWC, landmarks_TLC, margin_px), owner_T)
