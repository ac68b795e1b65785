"""Motion-code sequences for the LMDM: extraction, `.npz` datasets, and grain windows of L codes.

Two ways to get alpha sequences (`[T, M]` float32 per video):
  * `animator_codes`: the trained animator's encoder (`LeoEncoder`) on every frame, the real
    LEO preprocessing step;
  * `landmark_codes`: a stand-in for tests and the CPU demo, when no trained animator exists.
    The synthetic faces' exact landmark tracks (x, y of every point, centred at 0.5) go through
    a fixed, seeded linear projection with orthonormal columns to M magnitudes, times a
    scale. Codes are then a linear function of the face's pose and expression, like the
    animator's linear motion space, so per-step statistics are meaningful.

`write_code_file`/`read_code_file` store a split as one `.npz` (`codes` [N, T, M]);
`cached_codes` keeps a split's animator codes under a name keyed by the animator's parameter
digest and the video config, written atomically, so every LMDM run, `launch.generate
--compare` and the evaluation read one extraction.

Training windows: `build_window_dataset` serves windows of L consecutive codes (`codes_BLM`,
step 0 is the code they are conditioned on), and `build_anchored_window_dataset` the windows
the anchored LMDM needs: a conditioning code from anywhere earlier in the video, then L-1
consecutive codes `gap` frames after it, with their frame times (`times_BL`, 0 for the
conditioning code). Both are grain pipelines whose iterators checkpoint with the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable

import grain
import ml_collections
import numpy as np

from data_pipelines.frame_pairs import make_pair_source, pixels
from data_pipelines.sources import VideoSource

CODE_KINDS = ("landmarks", "animator")
# The code config's own fields; the rest is a video-source config (data_pipelines.pipeline).
CODE_FIELDS = (
    "code_source",
    "code_scale",
    "code_file",
    "animator_workdir",
    "window_gaps",
    "code_cache_dir",
)
WINDOW_GAPS = ("consecutive", "log_uniform", "mixed")
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


def video_fields(data: ml_collections.ConfigDict) -> dict:
    """The video-source fields of a code config (everything but the code config's own)."""
    return {k: v for k, v in data.to_dict().items() if k not in CODE_FIELDS}


def extract_codes(
    data: ml_collections.ConfigDict, split: str, *, motion_dim: int, encode_motion=None
) -> np.ndarray:
    """`[N, T, M]` codes of every video of a split, by `data.code_source`."""
    kind = data.code_source
    if kind not in CODE_KINDS:
        raise ValueError(f"data.code_source: expected one of {list(CODE_KINDS)}, got {kind!r}")
    source = make_pair_source(ml_collections.ConfigDict(video_fields(data)), split)
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
    """Writes `codes` atomically: a reader sees the old file, or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, codes=np.asarray(codes_NTM, np.float32))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def params_digest(leaves) -> str:
    """sha256 (16 hex) of arrays in order: names an animator by what its weights are."""
    h = hashlib.sha256()
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def code_cache_path(data: ml_collections.ConfigDict, split: str, animator_digest: str) -> str:
    """`<cache dir>/<split>_<key>.npz`; the key covers the animator and every video field."""
    fields = video_fields(data)
    text = json.dumps({"animator": animator_digest, "split": split, **fields}, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = data.get("code_cache_dir", "")
    directory = directory or os.path.join(data.animator_workdir, "motion_codes")
    return os.path.join(directory, f"{split}_{key}.npz")


def cached_codes(
    data: ml_collections.ConfigDict,
    split: str,
    *,
    motion_dim: int,
    load_encoder: Callable[[], tuple[Callable, str]] | None = None,
) -> np.ndarray:
    """`[N, T, M]` codes of a split by `data.code_source`; animator codes come from the cache.

    `load_encoder() -> (encode_motion, params digest)` loads the trained animator (called once,
    also on a cache hit: the digest is the key, so a retrained animator never reads stale
    codes). Landmark stand-in codes are cheap and never cached.
    """
    explicit = data.get("code_file", "") if split == "train" else ""
    if explicit:  # a file the user named: read if there, else extracted and written there
        if os.path.exists(explicit):
            return read_code_file(explicit)
        codes = cached_codes(
            ml_collections.ConfigDict({**data.to_dict(), "code_file": ""}), split,
            motion_dim=motion_dim, load_encoder=load_encoder,
        )  # fmt: skip
        write_code_file(explicit, codes)
        return codes
    if data.code_source != "animator":
        return extract_codes(data, split, motion_dim=motion_dim)
    if load_encoder is None:
        raise ValueError("data.code_source: 'animator' needs a trained animator's encoder")
    encode_motion, digest = load_encoder()
    path = code_cache_path(data, split, digest)
    if os.path.exists(path):
        codes = read_code_file(path)
        if codes.shape[-1] == motion_dim:
            return codes
    codes = extract_codes(data, split, motion_dim=motion_dim, encode_motion=encode_motion)
    write_code_file(path, codes)
    return codes


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


def window_gap(rng: np.random.Generator, max_gap: int, kind: str) -> int:
    """Frames from the conditioning code to a window's first code: 1 (consecutive), log-
    uniform in [1, max_gap] (every gap a long generation asks for), or mixed: half of the
    windows consecutive (first-frame samples and chaining), half log-uniform."""
    if kind == "consecutive" or max_gap <= 1:
        return 1
    if kind == "mixed" and rng.uniform() < 0.5:
        return 1
    return min(max_gap, int(np.exp(rng.uniform(0.0, np.log(max_gap + 1)))))


class AnchoredWindowReader:
    """Video index -> (conditioning code + L-1 consecutive codes, their frame times)."""

    def __init__(self, codes_NTM: np.ndarray, length: int, gaps: str):
        if gaps not in WINDOW_GAPS:
            raise ValueError(f"data.window_gaps: expected one of {list(WINDOW_GAPS)}, got {gaps!r}")
        if codes_NTM.shape[1] < length:
            raise ValueError(
                f"data.video_frames: expected >= model.length ({length}), got {codes_NTM.shape[1]}"
            )
        self.codes_NTM, self.length, self.gaps = codes_NTM, length, gaps

    def __call__(self, video: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        num_frames, new = self.codes_NTM.shape[1], self.length - 1
        gap = window_gap(rng, num_frames - new, self.gaps)
        anchor = int(rng.integers(0, num_frames - new - gap + 1))
        start = anchor + gap
        codes_LM = np.concatenate(
            [self.codes_NTM[video, anchor : anchor + 1], self.codes_NTM[video, start : start + new]]
        )
        times_L = np.concatenate([[0.0], gap + np.arange(new, dtype=np.float64)])
        return {"codes_LM": codes_LM.astype(np.float32), "times_L": times_L.astype(np.float32)}


def build_anchored_window_dataset(
    codes_NTM: np.ndarray,
    *,
    length: int,
    gaps: str,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.IterDataset:
    """Endless batches `{"codes_BLM", "times_BL"}`: one random window per video visit."""
    shuffle_seed, window_seed = np.random.SeedSequence([seed, shard_index]).generate_state(2)
    ds = grain.MapDataset.range(len(codes_NTM))[shard_index::shard_count]
    ds = ds.shuffle(seed=int(shuffle_seed)).repeat(None)
    ds = ds.random_map(AnchoredWindowReader(codes_NTM, length, gaps), seed=int(window_seed))
    ds = ds.batch(batch_size, drop_remainder=True, batch_fn=_stack_anchored)
    return ds.to_iter_dataset()


def _stack_anchored(windows) -> dict[str, np.ndarray]:
    return {
        "codes_BLM": np.stack([w["codes_LM"] for w in windows]),
        "times_BL": np.stack([w["times_L"] for w in windows]),
    }
