"""Segment planning: which frames of a T-frame video each anchored segment denoises.

A long video is generated as S segments of K frames that share one anchor frame: slot 0 of
every segment is the anchor, and slots 1..K-1 hold K-1 of the other T-1 frames. Every frame
other than the anchor is *owned* by exactly one (segment, slot), so scattering the segments
back gives each output frame exactly once. When T-1 is not a multiple of K-1 some slots are
padding: they repeat a real frame's index (so their times and landmarks are valid numbers),
are hidden from attention by the frame mask and are never written to the output.

Plan kinds (DESIGN.md, "Anchored inference"):
- `contiguous`: segment s holds the next K-1 frames in time order;
- `strided`: segment s holds frames s, s+S, s+2S, ... of the non-anchor frames, so every
  segment spans the whole video;
- `random`: a seeded random partition of the non-anchor frames, each segment sorted in time,
  non-uniform like the training clips.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PLAN_KINDS = ("contiguous", "strided", "random")


@dataclasses.dataclass(frozen=True, eq=False)
class SegmentPlan:
    """Frame indices per segment slot; slot 0 is the anchor in every segment.

    frame_index_SK: int32 [S, K], indices into the T frames (padding repeats a real index).
    owned_SK: bool [S, K], True where the slot owns that output frame (never the anchor slot).
    """

    num_frames: int
    anchor: int
    kind: str
    frame_index_SK: np.ndarray
    owned_SK: np.ndarray

    @property
    def num_segments(self) -> int:
        return int(self.frame_index_SK.shape[0])

    @property
    def frames_per_segment(self) -> int:
        return int(self.frame_index_SK.shape[1])

    @property
    def frame_mask_SK(self) -> np.ndarray:
        """True for slots the model should attend to: the anchor and every owned frame."""
        mask = self.owned_SK.copy()
        mask[:, 0] = True
        return mask

    @property
    def segment_valid_S(self) -> np.ndarray:
        """Segments that own at least one frame; at T=1 the lone segment counts as valid."""
        valid = self.owned_SK.any(axis=1)
        if not valid.any():
            valid = np.ones_like(valid)
        return valid

    def scatter(self, segments_SK: np.ndarray, anchor_value: np.ndarray) -> np.ndarray:
        """Puts the owned slots of `segments_SK[S, K, ...]` back in time order: `[T, ...]`.

        The anchor frame's output is `anchor_value` (the shared anchor, or the source image).
        """
        segments_SK = np.asarray(segments_SK)
        if segments_SK.shape[:2] != self.frame_index_SK.shape:
            raise ValueError(
                f"segments_SK: expected leading shape {self.frame_index_SK.shape}, "
                f"got {segments_SK.shape[:2]}"
            )
        out = np.empty((self.num_frames,) + segments_SK.shape[2:], segments_SK.dtype)
        out[self.frame_index_SK[self.owned_SK]] = segments_SK[self.owned_SK]
        out[self.anchor] = anchor_value
        return out


def _check_args(num_frames: int, frames_per_segment: int, anchor: int, kind: str) -> None:
    if kind not in PLAN_KINDS:
        raise ValueError(f"sampling.plan: expected one of {list(PLAN_KINDS)}, got {kind!r}")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"sampling.num_frames: expected an int >= 1, got {num_frames!r}")
    if not isinstance(frames_per_segment, (int, np.integer)) or frames_per_segment < 2:
        raise ValueError(
            "sampling.frames_per_segment: expected an int >= 2 (the anchor plus at least one "
            f"frame), got {frames_per_segment!r}"
        )
    if not 0 <= anchor < num_frames:
        raise ValueError(f"sampling.anchor: expected a frame in [0, {num_frames}), got {anchor}")


def plan_segments(
    num_frames: int,
    frames_per_segment: int,
    anchor: int = 0,
    kind: str = "contiguous",
    seed: int = 0,
) -> SegmentPlan:
    """Splits `num_frames` frames into anchored segments of `frames_per_segment` (K) slots.

    S = ceil((T-1) / (K-1)) segments (at least 1); `seed` only matters for `random`.
    """
    _check_args(num_frames, frames_per_segment, anchor, kind)
    T, K = int(num_frames), int(frames_per_segment)
    others = np.array([i for i in range(T) if i != anchor], dtype=np.int64)
    S = max(1, -(-len(others) // (K - 1)))
    slots = S * (K - 1)
    if kind == "contiguous":
        groups = [others[s * (K - 1) : (s + 1) * (K - 1)] for s in range(S)]
    elif kind == "strided":
        groups = [others[s::S] for s in range(S)]
    else:
        # A random partition into near-equal groups: the padding is spread one slot per
        # segment over the last segments, as in `strided`, so no segment is mostly padding.
        order = np.random.default_rng([seed, T, K, anchor]).permutation(others)
        groups = [np.sort(order[s::S]) for s in range(S)]
    frame_index_SK = np.full((S, K), anchor, np.int32)
    owned_SK = np.zeros((S, K), bool)
    for s, group in enumerate(groups):
        n = len(group)
        frame_index_SK[s, 1 : 1 + n] = group
        owned_SK[s, 1 : 1 + n] = True
        if 0 < n < K - 1:
            # Padding repeats the segment's last real frame: valid conditioning, masked out.
            frame_index_SK[s, 1 + n :] = group[-1]
    assert owned_SK.sum() == len(others) <= slots
    return SegmentPlan(
        num_frames=T,
        anchor=int(anchor),
        kind=kind,
        frame_index_SK=frame_index_SK,
        owned_SK=owned_SK,
    )
