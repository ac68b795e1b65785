"""Latent caches: every frame of a video source encoded once, so training reads latents.

`write_latent_cache` reads the videos of a `VideoSource` through grain, encodes their
frames with the autoencoder in fixed-size jitted batches, and writes one ArrayRecord record
per video (array_record's writer, `group_size:1` so any record is one random read). A
record is an `.npz` blob (read back with `allow_pickle=False`) holding:

    latents_ThwC   float32 (or float16) scaled latents of every frame, in frame order
    landmarks_TLC  float32, the source's landmarks
    video_id, identity_id, fps

`LatentCacheSource` reads a cache back without tfds: it is a grain random-access source
with the `VideoSource` interface, except that `read_frames` returns latents, not uint8.

A cache folder (what `launch/cache_latents.py` writes and `data.source = "latents"` reads)
holds one file per split, `<split>.array_record`, and `latent_cache.json` describing them
(frame side, latent shape, the VAE and its scaling); the JSON is written last, so a folder
with it is complete.
"""

import io
import json
import os

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
from tqdm import tqdm

from data_pipelines.sources import VideoRecord, VideoSource

WRITER_OPTIONS = "group_size:1"  # one record per chunk: random access costs one read
CACHE_INFO = "latent_cache.json"


def split_path(root: str, split: str) -> str:
    """The cache file of one split inside a cache folder."""
    return os.path.join(root, f"{split}.array_record")


def write_cache_info(root: str, info: dict) -> str:
    """Writes the folder's `latent_cache.json` atomically; returns its path."""
    path = os.path.join(root, CACHE_INFO)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, path)
    return path


def read_cache_info(root: str) -> dict:
    """The folder's `latent_cache.json`; a missing or unreadable one is one ValueError line."""
    path = os.path.join(root, CACHE_INFO)
    if not os.path.isfile(path):
        raise ValueError(
            f"data.root: {root!r} holds no latent cache ({CACHE_INFO} missing); "
            "write one with python -m launch.cache_latents"
        )
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable latent cache description ({e})") from None


def _pack(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    # Read every array now, so a bad record fails here, where its file is known.
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _encode_video(encode_fn, frames_THWC: np.ndarray, batch_frames: int) -> np.ndarray:
    """Encodes in chunks of exactly `batch_frames` (the last padded), so jit compiles once."""
    pixels = frames_THWC.astype(np.float32) / 127.5 - 1.0
    T = len(pixels)
    pad = (-T) % batch_frames
    if pad:
        pixels = np.concatenate([pixels, np.repeat(pixels[-1:], pad, axis=0)])
    chunks = [
        np.asarray(encode_fn(pixels[i : i + batch_frames][None]))[0]
        for i in range(0, len(pixels), batch_frames)
    ]
    return np.concatenate(chunks)[:T]


def write_latent_cache(
    source: VideoSource,
    encode_fn,
    path: str,
    *,
    batch_frames: int = 16,
    dtype: str = "float32",
    progress: bool = True,
    desc: str | None = None,
) -> int:
    """Encodes every video of `source` into the ArrayRecord file `path`; returns the count.

    `encode_fn(frames_BKHWC in [-1, 1]) -> latents_BKhwC`, e.g.
    `functools.partial(autoencoder_kl.encode_frames, vae)` (posterior mean, scaled).
    `desc` labels the progress bar (e.g. the split).
    """
    if batch_frames < 1:
        raise ValueError(f"batch_frames: expected a positive int, got {batch_frames}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    # grain reads (and decodes) the next videos while this process encodes.
    def with_frames(record: VideoRecord):
        return record, source.read_frames(record.video_id, np.arange(record.num_frames))

    videos = (
        grain.MapDataset.source(source)
        .map(with_frames)
        .to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    )
    writer = ArrayRecordWriter(os.path.abspath(path), WRITER_OPTIONS)
    count = 0
    try:
        for record, frames in tqdm(
            videos, total=len(source), disable=not progress, unit="video", desc=desc
        ):
            latents = _encode_video(encode_fn, frames, batch_frames).astype(dtype)
            writer.write(
                _pack(
                    dict(
                        latents_ThwC=latents,
                        landmarks_TLC=np.asarray(record.landmarks_TLC, np.float32),
                        video_id=np.int64(record.video_id),
                        identity_id=np.int64(record.identity_id),
                        fps=np.float64(record.fps),
                    )
                )
            )
            count += 1
    finally:
        writer.close()
    return count


class LatentCacheSource:
    """A written latent cache as a grain source: `source[i]` -> `VideoRecord` of video i.

    Record i is the i-th video written, so `video_id` here is the record index (the
    original source's id is kept in `original_video_id`). The reader opens lazily, so the
    source pickles to grain workers as its path.
    """

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: latent cache not found (write it first)")
        self.path = os.path.abspath(path)
        self._reader = None
        first = self._record(0) if len(self) else None
        if first is None:
            raise ValueError(f"{path}: latent cache holds no videos")
        latents = first["latents_ThwC"]
        self.image_size = int(latents.shape[1])
        self.latent_channels = int(latents.shape[3])

    def __getstate__(self):
        return {"path": self.path, "image_size": self.image_size,
                "latent_channels": self.latent_channels, "_reader": None}  # fmt: skip

    def _open(self) -> ArrayRecordReader:
        if self._reader is None:
            self._reader = ArrayRecordReader(self.path)
        return self._reader

    def __len__(self) -> int:
        return int(self._open().num_records())

    def _record(self, index: int):
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"video_id {index} out of range for {len(self)} cached videos")
        try:
            return _unpack(self._open().read([index])[0])
        except (OSError, ValueError) as e:  # Not an .npz record, or object arrays (pickles).
            raise ValueError(
                f"{self.path}: record {index} is not a latent-cache record ({e})"
            ) from e

    def original_video_id(self, index: int) -> int:
        return int(self._record(index)["video_id"])

    def __getitem__(self, video_id: int) -> VideoRecord:
        record = self._record(video_id)
        landmarks = record["landmarks_TLC"]
        return VideoRecord(
            video_id=int(video_id),
            identity_id=int(record["identity_id"]),
            num_frames=int(landmarks.shape[0]),
            fps=float(record["fps"]),
            landmarks_TLC=landmarks,
        )

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        """float32 latents `[k, h, w, C]` of the given frames, in the order given."""
        latents = self._record(video_id)["latents_ThwC"]
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= len(latents)):
            raise IndexError(
                f"frame indices must lie in [0, {len(latents)}), got {indices.tolist()}"
            )
        return latents[indices].astype(np.float32)

    def __repr__(self) -> str:
        return f"LatentCacheSource({self.path!r}, videos={len(self)}, side={self.image_size})"
