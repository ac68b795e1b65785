"""The inputs of the inference commands, read from files or held-out synthetic videos.

- `load_source_image`: the source (known anchor) of reenactment and animation, `[H, W, 3]` in
  [-1, 1]: an image file of the model's frame size, or `synthetic:<id>`, frame 0 of a held-out
  synthetic video;
- `load_driving_track`: the landmark track that drives a reenactment: a `.npz` landmark file,
  a `.npy` `[T, L, 3]` array, or `synthetic:<id>` (whose real frames are then read lazily,
  a window at a time, so a long track costs no memory up front);
- `load_driving_frames`: what drives the LEO animator: a video file, a folder of frames, a
  motion-code `.npz`, or `synthetic:<id>`.

Every bad input raises `InputError`, one line naming the flag and the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from data_pipelines.landmark_files import load_landmarks
from data_pipelines.sources import SyntheticFaceSource

SYNTHETIC_PREFIX = "synthetic:"
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_SYNTHETIC_FRAMES = 256  # a synthetic driving video's length when --frames is not given


class InputError(ValueError):
    """A bad input to an inference command; the message is one line naming the flag or file."""


def to_unit_range(frames_uint8: np.ndarray) -> np.ndarray:
    return frames_uint8.astype(np.float32) / 127.5 - 1.0


def held_out_video(config, video_id: int, num_frames: int) -> SyntheticFaceSource:
    """The held-out (test split) synthetic videos of a run's data config, `num_frames` long."""
    data = config.data
    source = SyntheticFaceSource(
        "test",
        num_identities=data.num_test_identities,
        videos_per_identity=data.videos_per_identity,
        num_frames=num_frames,
        image_size=data.image_size,
        fps=data.fps,
        seed=data.seed,
    )
    if not 0 <= video_id < len(source):
        raise InputError(
            f"synthetic:{video_id}: expected a held-out video id in [0, {len(source)})"
        )
    return source


def synthetic_id(spec: str, flag: str) -> int:
    try:
        return int(spec[len(SYNTHETIC_PREFIX) :])
    except ValueError:
        raise InputError(f"{flag}: expected synthetic:<int>, got {spec!r}") from None


def check_frames(frames: int | None, flag: str = "--frames", lowest: int = 2) -> None:
    """`None` means "the whole input"; 0 or fewer is refused, never read as the default."""
    if frames is not None and frames < lowest:
        raise InputError(f"{flag}: expected at least {lowest} frames, got {frames}")


def load_source_image(spec: str, config, flag: str = "--source") -> np.ndarray:
    """The source as float32 `[H, W, 3]` in [-1, 1], checked against the model's frame size."""
    size = config.data.image_size  # in pixels, also for a model that denoises latents
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = synthetic_id(spec, flag)
        return to_unit_range(held_out_video(config, video_id, 1).read_frames(video_id, [0])[0])
    if not os.path.isfile(spec):
        raise InputError(f"{flag} {spec}: no such image file")
    try:
        with Image.open(spec) as image:
            rgb = np.asarray(image.convert("RGB"))
    except OSError as e:
        raise InputError(f"{flag} {spec}: not a readable image ({e})") from None
    if rgb.shape[:2] != (size, size):
        raise InputError(
            f"{flag} {spec}: expected a {size}x{size} image (the model's frame size), "
            f"got {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return to_unit_range(rgb)


@dataclasses.dataclass(frozen=True, eq=False)
class DrivingTrack:
    """A driving landmark track; `read_real(start, stop)` gives the real frames `[n, H, W, 3]`
    in [-1, 1] of a synthetic driving video (None for landmark files)."""

    landmarks_TLC: np.ndarray
    fps: float
    read_real: Callable[[int, int], np.ndarray] | None = None

    @property
    def num_frames(self) -> int:
        return int(self.landmarks_TLC.shape[0])


def load_driving_track(
    spec: str, config, frames: int | None, fps: float, flag: str = "--driving"
) -> DrivingTrack:
    """The driving landmarks `[T, L, 3]` for an sDiT of `config`, `frames` long (None: all)."""
    check_frames(frames)
    num_landmarks = config.model.num_landmarks
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = synthetic_id(spec, flag)
        T = frames or DEFAULT_SYNTHETIC_FRAMES
        source = held_out_video(config, video_id, T)
        record = source[video_id]

        def read_real(start: int, stop: int) -> np.ndarray:
            return to_unit_range(source.read_frames(video_id, np.arange(start, stop)))

        return DrivingTrack(record.landmarks_TLC[:T].astype(np.float32), record.fps, read_real)
    if not os.path.isfile(spec):
        raise InputError(f"{flag} {spec}: no such landmark file")
    if spec.endswith(".npy"):
        try:
            landmarks = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{flag} {spec}: not a readable .npy array ({e})") from None
    else:
        track = load_landmarks(spec)  # raises a one-line ValueError naming the file
        landmarks, fps = track.landmarks_TLC, track.fps
    if landmarks.ndim != 3 or landmarks.shape[1:] != (num_landmarks, 3):
        raise InputError(
            f"{flag} {spec}: expected landmarks [T, {num_landmarks}, 3] for this model, "
            f"got shape {landmarks.shape}"
        )
    T = frames or landmarks.shape[0]
    if T > landmarks.shape[0]:
        raise InputError(f"--frames: {T} frames asked for but {spec} has only {landmarks.shape[0]}")
    return DrivingTrack(landmarks[:T].astype(np.float32), float(fps))


def _check_size(frames_THWC: np.ndarray, size: int, where: str) -> np.ndarray:
    if frames_THWC.shape[1:3] != (size, size):
        raise InputError(
            f"--driving {where}: expected {size}x{size} frames (the animator's frame size), "
            f"got {frames_THWC.shape[2]}x{frames_THWC.shape[1]}"
        )
    return to_unit_range(frames_THWC)


def load_driving_frames(spec: str, config, frames: int | None, motion_dim: int):
    """`(frames_THWC in [-1, 1] or None, codes_TM or None, fps)` of the animator's driving input."""
    check_frames(frames, lowest=1)
    size = config.data.image_size
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = synthetic_id(spec, "--driving")
        T = frames or 64
        video = held_out_video(config, video_id, T)
        return to_unit_range(video.read_frames(video_id, np.arange(T))), None, video[video_id].fps
    if not os.path.exists(spec):
        raise InputError(f"--driving {spec}: no such file or folder")
    if os.path.isdir(spec):
        names = sorted(n for n in os.listdir(spec) if n.lower().endswith(FRAME_EXTENSIONS))
        if not names:
            raise InputError(f"--driving {spec}: expected .png/.jpg frames in the folder")
        names = names[:frames] if frames else names
        try:
            images = [np.asarray(Image.open(os.path.join(spec, n)).convert("RGB")) for n in names]
        except OSError as e:
            raise InputError(f"--driving {spec}: unreadable frame ({e})") from None
        if len({im.shape for im in images}) != 1:
            raise InputError(f"--driving {spec}: frames of different sizes")
        return _check_size(np.stack(images), size, spec), None, 25.0
    if spec.endswith(".npz"):
        from data_pipelines.motion_codes import read_code_file

        codes = np.asarray(read_code_file(spec), np.float32)  # one-line errors of its own
        codes = codes[0] if codes.ndim == 3 else codes
        if codes.ndim != 2 or codes.shape[1] != motion_dim:
            raise InputError(
                f"--driving {spec}: expected codes [T, {motion_dim}], got {codes.shape}"
            )
        return None, codes[:frames] if frames else codes, 25.0
    from data_pipelines.video_decoding import decode_frames, probe_video

    probe = probe_video(spec)  # BadVideoError (a ValueError) names the file
    T = min(frames or probe.num_frames, probe.num_frames)
    return _check_size(decode_frames(probe, np.arange(T)), size, spec), None, probe.fps
