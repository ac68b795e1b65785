"""Grain pipeline of (source, driving) frame pairs from one video: LEO's animator training data.

  videos (VideoSource of data_pipelines.pipeline.make_source) -> this process's shard
  -> shuffle -> repeat -> one random pair per video visit -> batch -> iterator

The animator learns to re-render the source frame with the driving frame's motion, so both
frames come from the same video (same identity, same background). Any source the clip
pipeline reads works here: the pair config is the clip pipeline's data config, whose clip
fields are irrelevant to pairs and may be left out, plus `max_pair_gap`.

It also reads whole held-out videos, for the self-reconstruction evaluation.
"""

import grain
import ml_collections
import numpy as np
from absl import flags

from data_pipelines.landmark_layouts import layout_of, to_model_layout
from data_pipelines.pipeline import make_source
from data_pipelines.sources import VideoRecord, VideoSource

PAIR_BATCH_KEYS = (
    "source_BHWC",
    "driving_BHWC",
    "landmarks_B2L2",
    "frame_indices_B2",
    "video_id_B",
)
PAIR_FIELDS = ("max_pair_gap", "near_pair_fraction", "near_pair_gap")
# The clip pipeline's fields that pairs do not use, with neutral values for its validation.
_CLIP_FIELD_DEFAULTS = dict(
    clip_frames=1, min_window=1, max_window=1, sampler="uniform_stride", identity_frame="first"
)
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def make_pair_source(data: ml_collections.ConfigDict, split: str) -> VideoSource:
    """The video source of a pair config (validated by the clip pipeline's own checks)."""
    clip_data = ml_collections.ConfigDict(
        {k: v for k, v in data.to_dict().items() if k not in PAIR_FIELDS}
    )
    for field, value in _CLIP_FIELD_DEFAULTS.items():
        if field not in clip_data:
            clip_data[field] = value
    return make_source(clip_data, split)


def validate_pair_config(data: ml_collections.ConfigDict) -> None:
    gap = data.get("max_pair_gap", None)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"data.max_pair_gap: expected an integer >= 0 (0 = any), got {gap!r}")
    fraction = data.get("near_pair_fraction", 0.0)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not 0 <= fraction <= 1
    ):
        raise ValueError(f"data.near_pair_fraction: expected a number in [0, 1], got {fraction!r}")
    near = data.get("near_pair_gap", 1)
    if isinstance(near, bool) or not isinstance(near, int) or near < 1:
        raise ValueError(f"data.near_pair_gap: expected an integer >= 1, got {near!r}")
    make_pair_source(data, "train")


def pixels(frames_uint8: np.ndarray) -> np.ndarray:
    return frames_uint8.astype(np.float32) / 127.5 - 1.0


class PairReader:
    """One `VideoRecord` -> one (source, driving) pair; grain calls it with a seeded rng."""

    def __init__(
        self,
        source: VideoSource,
        max_pair_gap: int,
        near_pair_fraction: float = 0.0,
        near_pair_gap: int = 1,
    ):
        self.source = source
        self.max_pair_gap = max_pair_gap
        self.near_pair_fraction = near_pair_fraction
        self.near_pair_gap = near_pair_gap

    @staticmethod
    def ibug68(record: VideoRecord, frames: list[int]) -> np.ndarray:
        """The record's landmarks of `frames` in iBUG-68 order (FaceMesh tracks converted)."""
        points = record.landmarks_TLC[frames]
        where = f"video {record.video_id}'s landmarks"
        return to_model_layout(points, layout_of(points.shape[1]), 68, where)

    def __call__(self, record: VideoRecord, rng: np.random.Generator) -> dict[str, np.ndarray]:
        T = record.num_frames
        i = int(rng.integers(0, T))
        gap = self.max_pair_gap
        # A near pair: the head has barely moved, so what differs is mostly expression.
        if self.near_pair_fraction and rng.random() < self.near_pair_fraction:
            gap = min(gap, self.near_pair_gap) if gap else self.near_pair_gap
        if gap:
            lo, hi = max(0, i - gap), min(T, i + gap + 1)
            j = int(rng.integers(lo, hi))
        else:
            j = int(rng.integers(0, T))
        frames = pixels(self.source.read_frames(record.video_id, np.array([i, j])))
        return {
            "source_HWC": frames[0],
            "driving_HWC": frames[1],
            # x, y in [0, 1] of the source's and the driving frame's landmarks, iBUG-68
            "landmarks_2L2": self.ibug68(record, [i, j])[:, :, :2],
            "frame_indices_2": np.array([i, j], np.int32),
            "video_id": np.int32(record.video_id),
        }


def stack_pairs(pairs) -> dict[str, np.ndarray]:
    return {
        "source_BHWC": np.stack([p["source_HWC"] for p in pairs]),
        "driving_BHWC": np.stack([p["driving_HWC"] for p in pairs]),
        "landmarks_B2L2": np.stack([p["landmarks_2L2"] for p in pairs]),
        "frame_indices_B2": np.stack([p["frame_indices_2"] for p in pairs]),
        "video_id_B": np.array([p["video_id"] for p in pairs], np.int32),
    }


def build_pair_dataset(
    data: ml_collections.ConfigDict,
    *,
    split: str,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """Endless batches of frame pairs from this process's shard of a split (`batch_size` is per
    process); the same seed gives the same batches, and the iterator state resumes exactly."""
    validate_pair_config(data)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    source = make_pair_source(data, split)
    if len(source) < shard_count:
        raise ValueError(f"shard_count: {split} has {len(source)} videos, fewer than {shard_count}")
    shuffle_seed, pair_seed = np.random.SeedSequence([seed, shard_index]).generate_state(2)
    dataset = grain.MapDataset.source(source)[shard_index::shard_count]
    dataset = dataset.shuffle(seed=int(shuffle_seed)).repeat(None)
    reader = PairReader(
        source,
        data.max_pair_gap,
        data.get("near_pair_fraction", 0.0),
        data.get("near_pair_gap", 1),
    )
    dataset = dataset.random_map(reader, seed=int(pair_seed))
    dataset = dataset.batch(batch_size, drop_remainder=True, batch_fn=stack_pairs)
    iter_dataset = dataset.to_iter_dataset(_READ_OPTIONS)
    if data.get("worker_count", 0) > 0:
        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (see pipeline.py)
            flags.FLAGS.mark_as_parsed()
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=data.worker_count)
        )
    return iter_dataset


def read_videos(
    data: ml_collections.ConfigDict, split: str, num_videos: int, num_frames: int
) -> np.ndarray:
    """The first `num_frames` frames of the first `num_videos` videos: f32 `[V, T, H, W, 3]`."""
    source = make_pair_source(data, split)
    num_videos = min(num_videos, len(source))
    T = min(num_frames, source[0].num_frames)
    return np.stack([pixels(source.read_frames(v, np.arange(T))) for v in range(num_videos)])
