"""The embedded synthetic talking-face world: identities, motion, frames and landmarks.

Everything is a pure function of `(seed, identity id, video index, time)`:

- an identity (face shape, feature spacing, skin, hair, eye and lip colours) is drawn from
  `(seed, identity id)`; held-out ("test") identities have ids offset by
  `TEST_IDENTITY_OFFSET`, so their random streams never meet the training ones;
- a video's motion (head translation, roll, scale, yaw, blinks, mouth, brows) and background
  are drawn from `(seed, identity id, video index)`, and the motion is closed-form in time
  (sums of random sinusoids, blinks at hashed times), so any frame renders directly.

Frames come from `face_raster`, landmarks from `face_geometry`, both from the same posed
shapes. `export_dataset` writes the real-data layout (`DIR/<split>/<video>/<frame:05d>.png`
plus `landmarks.npz`), and the module is a CLI:

  python -m data_pipelines.synthetic_faces --out /tmp/faces --size 64 --frames 48 --identities 4
"""

import argparse
import dataclasses
import functools
import json
import os

import numpy as np
from PIL import Image

from data_pipelines.face_geometry import LANDMARK_LAYOUT, FaceIdentity, FacePose, face_landmarks
from data_pipelines.face_raster import render_faces
from data_pipelines.landmark_files import save_landmarks

SPLITS = ("train", "test")
# The per-frame pose and expression factors of a video (`SyntheticVideo.factors`), in order.
FACTORS = ("x", "y", "roll", "scale", "yaw", "eyes_closed", "mouth_open", "brow_raise")
TEST_IDENTITY_OFFSET = 1_000_000  # held-out ids start here, beyond any training id
_IDENTITY_STREAM, _VIDEO_STREAM = 1, 2  # keeps identity and motion draws independent

_SKIN_LIGHT, _SKIN_DARK = np.array([250.0, 218.0, 190.0]), np.array([105.0, 68.0, 48.0])
_HAIR_PALETTE = np.array(
    [[25, 20, 20], [70, 45, 30], [120, 80, 45], [205, 170, 105], [150, 60, 30], [165, 165, 165]],
    dtype=np.float64,
)
_IRIS_PALETTE = np.array(
    [[55, 105, 170], [60, 125, 70], [95, 55, 25], [125, 100, 45], [100, 115, 135]],
    dtype=np.float64,
)
# Motion channels, each a normalised sum of sinusoids in [-1, 1].
_CHANNELS = ("x", "y", "roll", "scale", "yaw", "mouth", "brow")
_SINUSOIDS = 3
_FREQ_RANGE_HZ = {"mouth": (0.4, 2.5)}  # talking is faster than head motion
_DEFAULT_FREQ_HZ = (0.1, 1.5)
_BLINK_SIGMA_S = 0.06


def identity_ids(split: str, num_identities: int) -> np.ndarray:
    """The global identity ids of a split: train 0..n-1, test offset beyond any train id."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    if not 0 < num_identities <= TEST_IDENTITY_OFFSET:
        raise ValueError(
            f"num_identities: expected 1..{TEST_IDENTITY_OFFSET}, got {num_identities}"
        )
    offset = 0 if split == "train" else TEST_IDENTITY_OFFSET
    return offset + np.arange(num_identities, dtype=np.int64)


def _rgb(a) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(a, 0, 255))


@functools.lru_cache(maxsize=4096)  # identities are immutable and reused by every frame read
def make_identity(seed: int, identity_id: int) -> FaceIdentity:
    """Draws one identity's shape and colours; the same (seed, id) always gives the same face."""
    rng = np.random.default_rng([seed, _IDENTITY_STREAM, identity_id])
    U = rng.uniform
    skin = _SKIN_LIGHT + U(0, 1) * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 6, 3)
    eye_half_height = U(0.07, 0.10)
    return FaceIdentity(
        identity_id=int(identity_id),
        half_width=U(0.68, 0.84),
        jaw_taper=U(0.62, 0.95),
        eye_height=U(-0.26, -0.10),
        eye_half_distance=U(0.27, 0.36),
        eye_half_width=U(0.13, 0.18),
        eye_half_height=eye_half_height,
        iris_radius=eye_half_height * U(0.75, 0.95),
        brow_height=U(0.15, 0.22),
        brow_half_length=U(0.11, 0.17),
        brow_thickness=U(0.025, 0.05),
        brow_arch=U(0.0, 0.06),
        nose_length=U(0.24, 0.36),
        nose_width=U(0.07, 0.12),
        nose_protrusion=U(0.12, 0.25),
        mouth_drop=U(0.14, 0.22),
        mouth_half_width=U(0.18, 0.30),
        lip_thickness=U(0.035, 0.06),
        mouth_max_open=U(0.07, 0.12),
        hairline_top=U(-0.85, -0.64),
        hairline_curve=U(0.05, 0.35),
        hair_bottom=U(-0.2, 0.6),
        skin_rgb=_rgb(skin),
        hair_rgb=_rgb(_HAIR_PALETTE[rng.integers(len(_HAIR_PALETTE))] + rng.normal(0, 10, 3)),
        iris_rgb=_rgb(_IRIS_PALETTE[rng.integers(len(_IRIS_PALETTE))] + rng.normal(0, 10, 3)),
        lip_rgb=_rgb(0.72 * skin + np.array([45.0, 0.0, 8.0])),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class VideoMotion:
    """One video's motion as closed-form functions of time, plus its background."""

    freq_CJ: np.ndarray  # Hz, C = len(_CHANNELS) channels of J sinusoids
    phase_CJ: np.ndarray
    weight_CJ: np.ndarray
    centre_x: float
    centre_y: float
    base_scale: float
    strength: float  # overall amplitude of head motion; some videos are calmer
    blink_period_s: float
    blink_key: int
    background: tuple[np.ndarray, np.ndarray, float]  # (colour0, colour1, gradient angle)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached motions are shared; nobody may edit them in place
    return a


@functools.lru_cache(maxsize=4096)
def make_motion(seed: int, identity_id: int, video_index: int) -> VideoMotion:
    """Draws one video's motion and background from (seed, identity, video index)."""
    rng = np.random.default_rng([seed, _VIDEO_STREAM, identity_id, video_index])
    lo_hi = np.array([_FREQ_RANGE_HZ.get(c, _DEFAULT_FREQ_HZ) for c in _CHANNELS])
    log_freq = rng.uniform(np.log(lo_hi[:, :1]), np.log(lo_hi[:, 1:]), (len(_CHANNELS), _SINUSOIDS))
    skin = np.asarray(make_identity(seed, identity_id).skin_rgb)
    for _ in range(16):  # keep the background clearly apart from the skin
        colour0 = rng.uniform(20, 235, 3)
        if np.linalg.norm(colour0 - skin) > 90:
            break
    plain = rng.uniform() < 0.3
    colour1 = colour0 if plain else np.clip(colour0 + rng.normal(0, 45, 3), 0, 255)
    return VideoMotion(
        freq_CJ=_read_only(np.exp(log_freq)),
        phase_CJ=_read_only(rng.uniform(0, 2 * np.pi, (len(_CHANNELS), _SINUSOIDS))),
        weight_CJ=_read_only(rng.uniform(0.3, 1.0, (len(_CHANNELS), _SINUSOIDS))),
        centre_x=rng.uniform(0.46, 0.54),
        centre_y=rng.uniform(0.50, 0.55),
        base_scale=rng.uniform(0.30, 0.35),
        strength=rng.uniform(0.5, 1.0),
        blink_period_s=rng.uniform(1.5, 4.0),
        blink_key=int(rng.integers(0, 2**62)),
        background=(
            _read_only(colour0.astype(np.float32)),
            _read_only(colour1.astype(np.float32)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
    )


def _hash_unit(key: int, k: np.ndarray) -> np.ndarray:
    """splitmix64 of (key, k) as uniforms in [0, 1): random blink times without any state."""
    z = np.uint64(key) + k.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def face_pose(motion: VideoMotion, times_T: np.ndarray) -> FacePose:
    """The pose and expression at arbitrary times (seconds); no frame depends on another."""
    t = np.asarray(times_T, np.float64)
    waves_CJT = np.sin(2 * np.pi * motion.freq_CJ[..., None] * t + motion.phase_CJ[..., None])
    w = motion.weight_CJ[..., None]
    signal = dict(zip(_CHANNELS, (w * waves_CJT).sum(1) / w.sum(1), strict=True))

    # Blink k is centred at a hashed time inside period k; only neighbouring periods reach t.
    n = np.floor(t / motion.blink_period_s).astype(np.int64)
    k_3T = n[None] + np.arange(-1, 2)[:, None]
    centre = (k_3T + 0.15 + 0.7 * _hash_unit(motion.blink_key, k_3T)) * motion.blink_period_s
    bump = np.exp(-0.5 * ((t[None] - centre) / _BLINK_SIGMA_S) ** 2)
    eyes_closed = np.clip(1.5 * bump.max(axis=0), 0.0, 1.0)

    m = motion.strength
    return FacePose(
        x=motion.centre_x + 0.05 * m * signal["x"],
        y=motion.centre_y + 0.035 * m * signal["y"],
        roll=0.18 * m * signal["roll"],
        scale=motion.base_scale * np.exp(0.06 * signal["scale"]),
        yaw=0.25 * m * signal["yaw"],
        eyes_closed=eyes_closed,
        mouth_open=np.clip(0.4 + 0.9 * signal["mouth"], 0.0, 1.0),
        brow_raise=np.clip(0.3 + 0.8 * signal["brow"], 0.0, 1.0),
    )


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """Addresses one synthetic video; render any of its frames or read all its landmarks."""

    seed: int
    identity_id: int
    video_index: int  # which of this identity's videos
    fps: float

    def _parts(self, frame_indices):
        identity = make_identity(self.seed, self.identity_id)
        motion = make_motion(self.seed, self.identity_id, self.video_index)
        times = np.asarray(frame_indices, np.float64) / self.fps
        return identity, motion, face_pose(motion, times)

    def frames(self, frame_indices: np.ndarray, image_size: int) -> np.ndarray:
        """uint8 [k, image_size, image_size, 3] for the requested frame indices only."""
        if not 8 <= image_size <= 1024:
            raise ValueError(f"image_size: expected 8..1024 pixels, got {image_size}")
        identity, motion, pose = self._parts(frame_indices)
        return render_faces(identity, pose, motion.background, image_size)

    def landmarks(self, frame_indices: np.ndarray) -> np.ndarray:
        """float32 [k, 68, 3] landmarks of the requested frames (see `face_landmarks`)."""
        identity, _, pose = self._parts(frame_indices)
        return face_landmarks(identity, pose)

    def factors(self, frame_indices: np.ndarray) -> np.ndarray:
        """float32 [k, len(FACTORS)]: the pose and expression that render each frame."""
        _, _, pose = self._parts(frame_indices)
        return np.stack([getattr(pose, name) for name in FACTORS], axis=-1).astype(np.float32)


def split_videos(
    split: str, *, num_identities: int, videos_per_identity: int, fps: float, seed: int
) -> list[SyntheticVideo]:
    """All videos of a split, identity-major: video id i is identity i // videos_per_identity."""
    if videos_per_identity < 1:
        raise ValueError(f"videos_per_identity: expected >= 1, got {videos_per_identity}")
    return [
        SyntheticVideo(seed=seed, identity_id=int(i), video_index=j, fps=fps)
        for i in identity_ids(split, num_identities)
        for j in range(videos_per_identity)
    ]


def export_dataset(
    out_dir: str | os.PathLike,
    *,
    split: str,
    num_identities: int,
    videos_per_identity: int,
    num_frames: int,
    image_size: int,
    fps: float = 25.0,
    seed: int = 0,
) -> list[str]:
    """Writes a split as `out_dir/<split>/<video_id:05d>/<frame:05d>.png` + `landmarks.npz`.

    This is the FOMM/LIA frame-folder layout that real-video readers also consume. A
    `videos.json` beside the folders maps each video folder to its identity id. Returns the
    video directories written.
    """
    videos = split_videos(
        split,
        num_identities=num_identities,
        videos_per_identity=videos_per_identity,
        fps=fps,
        seed=seed,
    )
    split_dir = os.path.join(os.fspath(out_dir), split)
    os.makedirs(split_dir, exist_ok=True)
    frame_indices = np.arange(num_frames)
    written, index = [], {}
    for video_id, video in enumerate(videos):
        name = f"{video_id:05d}"
        video_dir = os.path.join(split_dir, name)
        os.makedirs(video_dir, exist_ok=True)
        for i, frame in enumerate(video.frames(frame_indices, image_size)):
            Image.fromarray(frame).save(os.path.join(video_dir, f"{i:05d}.png"))
        save_landmarks(
            os.path.join(video_dir, "landmarks.npz"),
            video.landmarks(frame_indices),
            fps,
            LANDMARK_LAYOUT,
        )
        index[name] = {"identity_id": video.identity_id, "video_index": video.video_index}
        written.append(video_dir)
    with open(os.path.join(split_dir, "videos.json"), "w") as f:
        json.dump(index, f, indent=1)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_pipelines.synthetic_faces",
        description="Export synthetic talking-face videos in the frame-folder layout.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--identities", type=int, default=4, help="training identities")
    parser.add_argument("--test_identities", type=int, default=1, help="held-out identities")
    parser.add_argument("--videos_per_identity", type=int, default=2)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, n in (("train", args.identities), ("test", args.test_identities)):
        dirs = export_dataset(
            args.out,
            split=split,
            num_identities=n,
            videos_per_identity=args.videos_per_identity,
            num_frames=args.frames,
            image_size=args.size,
            fps=args.fps,
            seed=args.seed,
        )
        print(
            f"{split}: {len(dirs)} videos of {args.frames} frames in "
            f"{os.path.join(args.out, split)}"
        )


if __name__ == "__main__":
    main()
