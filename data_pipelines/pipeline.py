"""The grain input pipeline: batches of non-uniformly spaced clips for sDiT training.

  videos (VideoSource) -> shuffle -> repeat -> one random clip per video visit (sampler
  indices, frames, times, landmarks, identity frame) -> global batches -> this process's rows

`data.source` picks the videos: `synthetic` (procedural faces), `video_dir` (video files),
`frame_dir` (FOMM/LIA frame folders), `tfds:NAME` (an ArrayRecord TFDS dataset) or `latents`
(a latent cache written by `launch/cache_latents.py`), the last four under `data.root`. Pixel
sources give frames in [-1, 1]; the latent source gives the cached, already scaled VAE latents
unchanged (the identity frame too), and `check_model_fits_data` checks their shape against the
model's. A clip whose frames turn out undecodable is dropped with one warning line (never
patched with other frames) and its place taken by a whole clip of the next video, so a batch
is always made of correct clips.

Everything random is seeded from `seed` (order) and `data.seed` (the synthetic world), and
clip g of the stream draws from its own generator, seeded by (seed, g). The global batch at
step n is therefore a function of the seeds and n alone: every process reads the same stream
and takes its rows of each global batch (`data_pipelines/global_batches.py`), so 1 process or
several, with or without grain workers, see the same clips, and the iterator's `get_state()`
(the global stream position, the same JSON on every process) resumes exactly on any process
count.
"""

import json
import os
from collections.abc import Sequence

import grain
import ml_collections
import numpy as np
from absl import flags, logging

from data_pipelines.clip_sampling import SAMPLER_KINDS, clip_times, nonuniform_clip_indices
from data_pipelines.global_batches import GlobalBatchDataset, GlobalClips, ProcessRows
from data_pipelines.sources import SyntheticFaceSource, VideoRecord, VideoSource
from data_pipelines.video_decoding import BadVideoError

SOURCES = ("synthetic", "video_dir", "frame_dir", "latents", "tfds:NAME")
TFDS_PREFIX = "tfds:"
LATENT_SOURCE = "latents"
IDENTITY_FRAMES = ("random", "first")
# first: slot 0 is the clip's first frame; anywhere: slot 0 is an anchor frame drawn from the
# whole video (before, inside or after the other K-1 frames), times relative to it
ANCHOR_POSITIONS = ("first", "anywhere")
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
# Fields of the real-data sources; a config without them is a synthetic one and validates.
OPTIONAL_FIELDS = {
    "root": "",  # folder with train/ and test/ (video_dir, frame_dir); TFDS data_dir for tfds:
    "verify_files": False,  # decode every frame once at start: slow, finds corrupt files early
    "vae": "",  # latents only: diffusers VAE folder that decodes them (sample grids)
    "anchor_position": "first",  # where slot 0 (the anchor) comes from: ANCHOR_POSITIONS
}
_FIELDS = (*_INT_FIELDS, "source", "fps", "sampler", "identity_frame")
_MAX_IMAGE_SIZE = 256
# grain's defaults (16 threads, 500 elements ahead) would read hundreds of clips up front; two
# threads and about one batch of clips ahead keep a training step fed without hoarding memory.
_READ_THREADS = 2
_MAX_CLIPS_AHEAD = 64


def _fail(field: str, expected: str, got) -> None:
    raise ValueError(f"data.{field}: expected {expected}, got {got!r}")


def validate_data_config(data: ml_collections.ConfigDict) -> None:
    """Checks every `config.data` field; a bad one raises a one-line ValueError naming it."""
    present = set(data.keys())
    for field in _FIELDS:
        if field not in present:
            raise ValueError(f"data.{field}: missing from the data config")
    known = set(_FIELDS) | set(OPTIONAL_FIELDS)
    unknown = sorted(present - known)
    if unknown:
        raise ValueError(f"data.{unknown[0]}: unknown field; expected only {sorted(known)}")
    source = data.source
    tfds_name = source[len(TFDS_PREFIX) :] if isinstance(source, str) else ""
    is_tfds = isinstance(source, str) and source.startswith(TFDS_PREFIX) and bool(tfds_name)
    if source not in SOURCES[:-1] and not is_tfds:
        _fail("source", f"one of {list(SOURCES)}", source)
    root = data.get("root", OPTIONAL_FIELDS["root"])
    if not isinstance(root, str):
        _fail("root", "a folder path (a string)", root)
    if source in ("video_dir", "frame_dir") and not root:
        _fail("root", f"the dataset folder (with train/ and test/) for source {source}", root)
    if source == LATENT_SOURCE and not root:
        _fail("root", "the latent cache folder (from python -m launch.cache_latents)", root)
    if not isinstance(data.get("verify_files", False), bool):
        _fail("verify_files", "True or False", data.verify_files)
    vae = data.get("vae", OPTIONAL_FIELDS["vae"])
    if not isinstance(vae, str) or (vae and source != LATENT_SOURCE):
        _fail("vae", f"'' for source {source} (a VAE folder only decodes source latents)", vae)
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
    anchor_position = data.get("anchor_position", OPTIONAL_FIELDS["anchor_position"])
    if anchor_position not in ANCHOR_POSITIONS:
        _fail("anchor_position", f"one of {list(ANCHOR_POSITIONS)}", anchor_position)
    if data.identity_frame not in IDENTITY_FRAMES:
        _fail("identity_frame", f"one of {list(IDENTITY_FRAMES)}", data.identity_frame)
    if data.video_frames < data.clip_frames:
        _fail("video_frames", f">= data.clip_frames ({data.clip_frames})", data.video_frames)
    if data.max_window < data.clip_frames:
        _fail("max_window", f">= data.clip_frames ({data.clip_frames})", data.max_window)
    if data.min_window > data.max_window:
        _fail("min_window", f"<= data.max_window ({data.max_window})", data.min_window)


def make_source(data: ml_collections.ConfigDict, split: str) -> VideoSource:
    """The configured video source of one split; real sources log their scan summary."""
    validate_data_config(data)
    root = data.get("root", OPTIONAL_FIELDS["root"])
    verify = data.get("verify_files", OPTIONAL_FIELDS["verify_files"])
    if data.source == LATENT_SOURCE:
        return _latent_source(data, split)
    if data.source != "synthetic":
        # Imported here so a synthetic run needs neither PyAV nor TFDS.
        if data.source == "video_dir":
            from data_pipelines.video_files import VideoFileSource as source_class
        elif data.source == "frame_dir":
            from data_pipelines.frame_folders import FrameFolderSource as source_class
        else:
            from data_pipelines.tfds_face_videos import TfdsVideoSource

            return TfdsVideoSource(
                data.source[len(TFDS_PREFIX) :],
                split,
                data_dir=root or None,
                image_size=data.image_size,
                min_frames=data.clip_frames,
            )
        source = source_class(
            root, split, image_size=data.image_size, min_frames=data.clip_frames, verify=verify
        )
        logging.info("%s", source.report.summary())
        return source
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


def _cache_info(data: ml_collections.ConfigDict) -> dict:
    """The description of the latent cache at `data.root`, checked against `data.image_size`."""
    from data_pipelines.latent_cache import read_cache_info

    info = read_cache_info(data.root)
    if data.image_size != info["image_size"]:
        _fail(
            "image_size",
            f"the frame side the latent cache {data.root!r} was encoded from "
            f"({info['image_size']} px)",
            data.image_size,
        )
    return info


def _latent_source(data: ml_collections.ConfigDict, split: str) -> VideoSource:
    """One split of a latent cache, checked against the data config it is read with."""
    from data_pipelines.latent_cache import LatentCacheSource, split_path

    info = _cache_info(data)
    if split not in info["splits"]:
        raise ValueError(
            f"data.root: the latent cache {data.root!r} has no {split!r} split "
            f"(it has {sorted(info['splits'])}); write it with --splits"
        )
    shortest = info["splits"][split]["min_frames"]
    if data.clip_frames > shortest:
        _fail(
            "clip_frames",
            f"<= {shortest}: videos of the latent cache {data.root!r} may be that short "
            "(rewrite it with this data.clip_frames)",
            data.clip_frames,
        )
    path = split_path(data.root, split)
    if not os.path.isfile(path):
        raise ValueError(f"data.root: {path} is missing from the latent cache; write it again")
    return LatentCacheSource(path)


def check_model_fits_data(data: ml_collections.ConfigDict, model: ml_collections.ConfigDict):
    """A latent source's cache must hold the model's input shape, and `data.vae` must be a VAE
    with the cache's latent space; one ValueError line naming the field. Pixel sources are
    checked against the model without I/O (`config_checks.validate_sdit_config`)."""
    validate_data_config(data)
    if data.source != LATENT_SOURCE:
        return
    info = _cache_info(data)  # data.image_size first: model.image_size may follow it
    latent = f"the latent cache {data.root!r} holds"
    if model.image_size != info["latent_size"]:
        raise ValueError(
            f"model.image_size: {latent} {info['latent_size']}x{info['latent_size']} latents, "
            f"got {model.image_size}"
        )
    if model.in_channels != info["latent_channels"]:
        raise ValueError(
            f"model.in_channels: {latent} {info['latent_channels']}-channel latents, "
            f"got {model.in_channels}"
        )
    vae = data.get("vae", OPTIONAL_FIELDS["vae"])
    if vae:
        _check_vae_matches(vae, info, data.root)


def _check_vae_matches(vae: str, info: dict, root: str) -> None:
    path = os.path.join(vae, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"data.vae: {path} not found (expected a diffusers VAE folder)")
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"data.vae: {path} is not readable JSON ({e})") from None
    # diffusers' defaults for keys a config.json may leave out.
    found = (raw.get("latent_channels", 4), raw.get("scaling_factor", 0.18215))
    cached = (info["latent_channels"], info["scaling_factor"])
    if found[0] != cached[0] or not np.isclose(found[1], cached[1]):
        raise ValueError(
            f"data.vae: {vae} has {found[0]} latent channels and scaling factor {found[1]}, "
            f"but the latent cache {root!r} was encoded with {cached[0]} and {cached[1]}"
        )


def anchor_frame(rng: np.random.Generator, num_frames: int, others: np.ndarray) -> int:
    """An anchor frame for the clip `others`, inside the video and not one of them.

    Half the time it is uniform over the video (far anchors: a long video's segments are
    mostly hundreds of frames from theirs), half the time at a log-uniform distance from a
    random frame of the clip (as many near anchors as far ones per octave)."""
    free = np.setdiff1d(np.arange(num_frames), others)
    if rng.random() < 0.5:
        return int(rng.choice(free))
    taken = set(others.tolist())
    for _ in range(64):
        distance = int(np.floor(np.exp(rng.uniform(0.0, np.log(num_frames)))))
        anchor = int(rng.choice(others)) + distance * (1 if rng.random() < 0.5 else -1)
        if 0 <= anchor < num_frames and anchor not in taken:
            return anchor
    return int(rng.choice(free))


class ClipReader:
    """Turns one `VideoRecord` into one training clip: grain calls it with a seeded generator.

    Only the clip's K frames and the identity frame are read from the source. Pixels become
    [-1, 1]; latents are already the model's input and pass unchanged.

    With `data.anchor_position = "anywhere"`, slot 0 is an anchor frame drawn from the whole
    video (`anchor_frame`) and slots 1..K-1 are a non-uniform clip drawn by `data.sampler` anywhere
    else in it, so the anchor may sit before, inside or after them and the anchor-to-frame gap
    covers every distance a long anchored video asks for; times are relative to the anchor.
    """

    def __init__(self, source: VideoSource, data: ml_collections.ConfigDict):
        self.source = source
        self.clip_frames = data.clip_frames
        self.sampler = data.sampler
        self.min_window = data.min_window
        self.max_window = data.max_window
        self.identity_frame = data.identity_frame
        self.anchor_anywhere = (
            data.get("anchor_position", OPTIONAL_FIELDS["anchor_position"]) == "anywhere"
        )
        self.latents = data.source == LATENT_SOURCE

    def clip_indices(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """The K frame indices of one clip; slot 0 is the anchor."""
        if not self.anchor_anywhere or self.clip_frames == 1 or num_frames <= self.clip_frames:
            return nonuniform_clip_indices(
                rng, num_frames, self.clip_frames, self.sampler,
                min_window=self.min_window, max_window=self.max_window,
            )  # fmt: skip
        others = nonuniform_clip_indices(
            rng, num_frames, self.clip_frames - 1, self.sampler,
            min_window=self.min_window, max_window=self.max_window,
        )  # fmt: skip
        return np.concatenate([[anchor_frame(rng, num_frames, others)], others]).astype(np.int32)

    def __call__(
        self, record: VideoRecord, rng: np.random.Generator
    ) -> dict[str, np.ndarray] | None:
        indices_K = self.clip_indices(record.num_frames, rng)
        if self.identity_frame == "first":
            identity_index = indices_K[0]
        else:
            identity_index = rng.integers(0, record.num_frames)
        # One read for the clip and its identity frame: a real decoder seeks once.
        try:
            frames = self.source.read_frames(record.video_id, np.append(indices_K, identity_index))
        except BadVideoError as e:
            logging.warning("dropping a clip of video %d: %s", record.video_id, e)
            return None  # grain skips it; the batch fills from the next clips.
        if self.latents:
            values = frames.astype(np.float32)
        else:
            assert frames.dtype == np.uint8, f"pixel sources give uint8 frames, got {frames.dtype}"
            values = frames.astype(np.float32) / 127.5 - 1.0
        return {
            "video_KHWC": values[:-1],
            "times_K": clip_times(indices_K, record.fps),
            "landmarks_KLC": record.landmarks_TLC[indices_K].astype(np.float32),
            "identity_HWC": values[-1],
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
) -> GlobalBatchDataset:
    """This process's rows of the global batches of clips of a split (module docstring).

    `batch_size` is per process and `shard_count` processes share each global batch of
    `batch_size * shard_count` clips; process `shard_index` takes rows
    `[shard_index * batch_size, (shard_index + 1) * batch_size)`. The global batch at step n
    depends on `seed` and n only, so any process count sees the same clips. `num_epochs=None`
    repeats forever; a finite run drops its last partial global batch.
    """
    validate_data_config(data_config)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index: expected 0 <= index < {shard_count}, got {shard_index}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs: expected None (forever) or >= 1, got {num_epochs}")
    source = make_source(data_config, split)
    # One stream for every process layout; [seed, 0] is what a single process always used, so
    # its clips are unchanged.
    shuffle_seed, clip_seed = np.random.SeedSequence([seed, 0]).generate_state(2)
    records = grain.MapDataset.source(source)
    if shuffle:
        records = records.shuffle(seed=int(shuffle_seed))  # reshuffled every epoch by repeat
    clips = GlobalClips(records.repeat(num_epochs), ClipReader(source, data_config), int(clip_seed))
    read_options = grain.ReadOptions(
        num_threads=_READ_THREADS, prefetch_buffer_size=max(4, min(batch_size, _MAX_CLIPS_AHEAD))
    )
    global_batch = batch_size * shard_count

    def make_batches(start: int) -> grain.IterDataset:
        rows = ProcessRows(
            clips, start=start, global_batch=global_batch, rows=batch_size, process=shard_index
        )
        iter_dataset = rows.to_iter_dataset(read_options)
        if data_config.worker_count > 0:
            # grain's workers read absl flags; outside an absl app (notebooks, plain scripts) no
            # one parsed them, so take their defaults rather than fail on the first batch.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            iter_dataset = iter_dataset.mp_prefetch(
                grain.MultiprocessingOptions(num_workers=data_config.worker_count)
            )
        # Batch last, in this process: workers each get a slice of the clips, and batching
        # after their round-robin merge gives the same batches as reading in-process.
        return iter_dataset.batch(batch_size, drop_remainder=True, batch_fn=stack_clips)

    return GlobalBatchDataset(make_batches, global_batch)
