"""The grain input pipeline: batches of non-uniformly spaced clips for sDiT training.

  videos (VideoSource) -> this process's shard -> shuffle -> repeat -> one random clip per
  video visit (sampler indices, frames, times, landmarks, identity frame) -> batch -> iterator

Everything random is seeded from `seed` (order) and `data.seed` (the synthetic world), and
the clip randomness comes from grain's per-element generator, seeded by (seed, element
index): the same seed gives the same batches in any process layout of workers, and the
iterator's `get_state()` / `set_state()` resumes mid-epoch exactly.
"""

from collections.abc import Sequence

import grain
import ml_collections
import numpy as np
from absl import flags

from data_pipelines.clip_sampling import SAMPLER_KINDS, clip_times, nonuniform_clip_indices
from data_pipelines.sources import SyntheticFaceSource, VideoRecord, VideoSource

SOURCES = ("synthetic",)
IDENTITY_FRAMES = ("random", "first")
BATCH_KEYS = (
    "video_BKHWC",
    "times_BK",
    "landmarks_BKLC",
    "identity_BHWC",
    "frame_indices_BK",
    "video_id_B",
    "identity_id_B",
)
_INT_FIELDS = {  # field -> smallest allowed value
    "image_size": 32,
    "clip_frames": 1,
    "video_frames": 1,
    "num_train_identities": 1,
    "num_test_identities": 1,
    "videos_per_identity": 1,
    "min_window": 1,
    "max_window": 1,
    "seed": 0,
    "worker_count": 0,
}
_FIELDS = (*_INT_FIELDS, "source", "fps", "sampler", "identity_frame")
_MAX_IMAGE_SIZE = 256
# grain's defaults (16 threads, 500 elements ahead) would render hundreds of batches up front;
# a few batches ahead on two threads keeps a training step fed without hoarding memory.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def _fail(field: str, expected: str, got) -> None:
    raise ValueError(f"data.{field}: expected {expected}, got {got!r}")


def validate_data_config(data: ml_collections.ConfigDict) -> None:
    """Checks every `config.data` field; a bad one raises a one-line ValueError naming it."""
    present = set(data.keys())
    for field in _FIELDS:
        if field not in present:
            raise ValueError(f"data.{field}: missing from the data config")
    unknown = sorted(present - set(_FIELDS))
    if unknown:
        raise ValueError(f"data.{unknown[0]}: unknown field; expected only {sorted(_FIELDS)}")
    if data.source not in SOURCES:
        _fail("source", f"one of {list(SOURCES)}", data.source)
    for field, lowest in _INT_FIELDS.items():
        value = data[field]
        highest = _MAX_IMAGE_SIZE if field == "image_size" else None
        expected = f"an integer in [{lowest}, {highest}]" if highest else f"an integer >= {lowest}"
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            _fail(field, expected, value)
        if value < lowest or (highest is not None and value > highest):
            _fail(field, expected, value)
    fps = data.fps
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < float("inf"):
        _fail("fps", "a frame rate > 0", fps)
    if data.sampler not in SAMPLER_KINDS:
        _fail("sampler", f"one of {list(SAMPLER_KINDS)}", data.sampler)
    if data.identity_frame not in IDENTITY_FRAMES:
        _fail("identity_frame", f"one of {list(IDENTITY_FRAMES)}", data.identity_frame)
    if data.video_frames < data.clip_frames:
        _fail("video_frames", f">= data.clip_frames ({data.clip_frames})", data.video_frames)
    if data.max_window < data.clip_frames:
        _fail("max_window", f">= data.clip_frames ({data.clip_frames})", data.max_window)
    if data.min_window > data.max_window:
        _fail("min_window", f"<= data.max_window ({data.max_window})", data.min_window)


def make_source(data: ml_collections.ConfigDict, split: str) -> VideoSource:
    """The configured video source of one split."""
    validate_data_config(data)
    num_identities = data.num_train_identities if split == "train" else data.num_test_identities
    return SyntheticFaceSource(
        split,
        num_identities=num_identities,
        videos_per_identity=data.videos_per_identity,
        num_frames=data.video_frames,
        image_size=data.image_size,
        fps=data.fps,
        seed=data.seed,
    )


class ClipReader:
    """Turns one `VideoRecord` into one training clip: grain calls it with a seeded generator.

    Only the clip's K frames and the identity frame are read from the source.
    """

    def __init__(self, source: VideoSource, data: ml_collections.ConfigDict):
        self.source = source
        self.clip_frames = data.clip_frames
        self.sampler = data.sampler
        self.min_window = data.min_window
        self.max_window = data.max_window
        self.identity_frame = data.identity_frame

    def __call__(self, record: VideoRecord, rng: np.random.Generator) -> dict[str, np.ndarray]:
        indices_K = nonuniform_clip_indices(
            rng,
            record.num_frames,
            self.clip_frames,
            self.sampler,
            min_window=self.min_window,
            max_window=self.max_window,
        )
        if self.identity_frame == "first":
            identity_index = indices_K[0]
        else:
            identity_index = rng.integers(0, record.num_frames)
        # One read for the clip and its identity frame: a real decoder seeks once.
        frames = self.source.read_frames(record.video_id, np.append(indices_K, identity_index))
        pixels = frames.astype(np.float32) / 127.5 - 1.0
        return {
            "video_KHWC": pixels[:-1],
            "times_K": clip_times(indices_K, record.fps),
            "landmarks_KLC": record.landmarks_TLC[indices_K].astype(np.float32),
            "identity_HWC": pixels[-1],
            "frame_indices_K": indices_K.astype(np.int32),
            "video_id": np.int32(record.video_id),
            "identity_id": np.int32(record.identity_id),
        }


def stack_clips(clips: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stacks clips into a batch; each key gains its leading B axis in name and shape."""
    batch = {
        "video_BKHWC": np.stack([c["video_KHWC"] for c in clips]),
        "times_BK": np.stack([c["times_K"] for c in clips]),
        "landmarks_BKLC": np.stack([c["landmarks_KLC"] for c in clips]),
        "identity_BHWC": np.stack([c["identity_HWC"] for c in clips]),
        "frame_indices_BK": np.stack([c["frame_indices_K"] for c in clips]),
        "video_id_B": np.array([c["video_id"] for c in clips], np.int32),
        "identity_id_B": np.array([c["identity_id"] for c in clips], np.int32),
    }
    assert tuple(batch) == BATCH_KEYS
    return batch


def build_clip_dataset(
    data_config: ml_collections.ConfigDict,
    *,
    split: str,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    shuffle: bool = True,
) -> grain.IterDataset:
    """Batches of clips from this process's shard of a split (see the module docstring).

    Each process gets the videos `shard_index::shard_count`, disjoint from every other
    process's; `batch_size` is per process. `num_epochs=None` repeats forever. The last
    partial batch of a finite run is dropped, so every batch has exactly `batch_size` clips.
    """
    validate_data_config(data_config)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: expected 0 <= index < {shard_count}, got {shard_index}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs: expected None (forever) or >= 1, got {num_epochs}")
    source = make_source(data_config, split)
    if len(source) < shard_count:
        raise ValueError(
            f"shard_count: {split} has {len(source)} videos, fewer than {shard_count} shards; "
            "add identities or videos_per_identity"
        )
    # Distinct streams per shard: element i of two shards must not draw the same clip layout.
    shuffle_seed, clip_seed = np.random.SeedSequence([seed, shard_index]).generate_state(2)

    dataset = grain.MapDataset.source(source)[shard_index::shard_count]
    if shuffle:
        dataset = dataset.shuffle(seed=int(shuffle_seed))  # reshuffled every epoch by repeat
    dataset = dataset.repeat(num_epochs)
    dataset = dataset.random_map(ClipReader(source, data_config), seed=int(clip_seed))
    dataset = dataset.batch(batch_size, drop_remainder=True, batch_fn=stack_clips)
    iter_dataset = dataset.to_iter_dataset(_READ_OPTIONS)
    if data_config.worker_count > 0:
        # grain's workers read absl flags; outside an absl app (notebooks, plain scripts) no one
        # parsed them, so take their defaults rather than fail on the first batch.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iter_dataset = iter_dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=data_config.worker_count)
        )
    return iter_dataset
