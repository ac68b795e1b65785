"""Motion-code sequences for the LMDM: extraction, `.npz` datasets, and grain windows of L codes.

Two ways to get alpha sequences (`[T, M]` float32 per video):
  * `animator_codes`: the trained animator's encoder (`LeoEncoder`) on every frame, the real
    LEO preprocessing step;
  * `landmark_codes`: a stand-in for tests and the CPU demo, when no trained animator exists.
    The synthetic faces' exact landmark tracks (x, y of every point, centred at 0.5) go through
    a fixed, seeded linear projection with orthonormal columns to M magnitudes, times a
    scale. Codes are then a linear function of the face's pose and expression, like the
    animator's linear motion space, so per-step statistics are meaningful.

`write_code_file`/`read_code_file` store a split as one `.npz` (`codes` [N, T, M]), and
`build_window_dataset` serves random windows of L consecutive codes as a grain pipeline
(MapDataset source -> shuffle -> repeat -> batch), whose iterator checkpoints with the run.
"""

from __future__ import annotations

import os

import grain
import ml_collections
import numpy as np

from data_pipelines.frame_pairs import make_pair_source, pixels
from data_pipelines.sources import VideoSource

CODE_KINDS = ("landmarks", "animator")
# The code config's own fields; the rest is a video-source config (data_pipelines.pipeline).
CODE_FIELDS = ("code_source", "code_scale", "code_file", "window_stride", "animator_workdir")
PROJECTION_SEED = 20  # fixes the landmark -> code projection across runs and machines


def landmark_projection(num_coords: int, motion_dim: int, seed: int = PROJECTION_SEED):
    """A fixed `[num_coords, motion_dim]` matrix with orthonormal columns (QR of a Gaussian)."""
    if motion_dim > num_coords:
        raise ValueError(
            f"model.motion_dim: expected <= {num_coords} landmark coordinates, got {motion_dim}"
        )
    gaussian = np.random.default_rng(seed).standard_normal((num_coords, motion_dim))
    q, _ = np.linalg.qr(gaussian)
    return q.astype(np.float32)


def landmark_codes(landmarks_TLC: np.ndarray, motion_dim: int, scale: float) -> np.ndarray:
    """Stand-in alpha `[T, motion_dim]`: scale * (centred x, y of all landmarks) @ projection."""
    xy_TN = (np.asarray(landmarks_TLC, np.float32)[..., :2] - 0.5).reshape(len(landmarks_TLC), -1)
    return scale * xy_TN @ landmark_projection(xy_TN.shape[1], motion_dim)


def animator_codes(encode_motion, source: VideoSource, video_id: int, batch_size: int = 16):
    """alpha `[T, M]` of every frame of one video, from `encode_motion(frames_BHWC) -> [B, M]`.

    `encode_motion` is e.g. `jax.jit(lambda x: encoder(x)[2])` for a trained `LeoEncoder`.
    """
    num_frames = source[video_id].num_frames
    codes = []
    for start in range(0, num_frames, batch_size):
        idx = np.arange(start, min(start + batch_size, num_frames))
        codes.append(np.asarray(encode_motion(pixels(source.read_frames(video_id, idx)))))
    return np.concatenate(codes).astype(np.float32)


def extract_codes(
    data: ml_collections.ConfigDict, split: str, *, motion_dim: int, encode_motion=None
) -> np.ndarray:
    """`[N, T, M]` codes of every video of a split, by `data.code_source`."""
    kind = data.code_source
    if kind not in CODE_KINDS:
        raise ValueError(f"data.code_source: expected one of {list(CODE_KINDS)}, got {kind!r}")
    video_fields = {k: v for k, v in data.to_dict().items() if k not in CODE_FIELDS}
    source = make_pair_source(ml_collections.ConfigDict(video_fields), split)
    if kind == "animator" and encode_motion is None:
        raise ValueError("data.code_source: 'animator' needs a trained animator's encoder")
    out = []
    for vid in range(len(source)):
        if kind == "landmarks":
            out.append(landmark_codes(source[vid].landmarks_TLC, motion_dim, data.code_scale))
        else:
            out.append(animator_codes(encode_motion, source, vid))
    return np.stack(out)


def write_code_file(path: str, codes_NTM: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, codes=np.asarray(codes_NTM, np.float32))


def read_code_file(path: str) -> np.ndarray:
    try:
        with np.load(path) as f:
            codes = f["codes"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: expected an .npz with 'codes' [N, T, M] ({e})") from None
    if codes.ndim != 3:
        raise ValueError(f"{path}: expected 'codes' of shape [N, T, M], got {codes.shape}")
    return codes.astype(np.float32)


def code_windows(codes_NTM: np.ndarray, length: int, stride: int) -> np.ndarray:
    """All windows `[W, length, M]` of consecutive codes, starting every `stride` steps."""
    if codes_NTM.shape[1] < length:
        raise ValueError(
            f"data.video_frames: expected >= model.length ({length}), got {codes_NTM.shape[1]}"
        )
    starts = range(0, codes_NTM.shape[1] - length + 1, stride)
    return np.concatenate([codes_NTM[:, s : s + length] for s in starts]).astype(np.float32)


def build_window_dataset(
    windows_WLM: np.ndarray, *, batch_size: int, seed: int, shard_index=0, shard_count=1
) -> grain.IterDataset:
    """Shuffled, repeating batches `{"codes_BLM": ...}` of this shard's windows."""
    ds = grain.MapDataset.source(windows_WLM)[shard_index::shard_count]
    ds = ds.shuffle(seed=seed).repeat(None)
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=_stack_windows)
    return ds.to_iter_dataset()


def _stack_windows(windows) -> dict[str, np.ndarray]:
    return {"codes_BLM": np.stack(windows).astype(np.float32)}
