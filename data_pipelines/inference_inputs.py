"""The inputs of the inference commands, read from files or held-out synthetic videos.

- `load_source_image`: the source (known anchor) of reenactment and animation, `[H, W, 3]` in
  [-1, 1]: an image file (used as is at the model's frame size; any other photo has its face
  found with FaceMesh, cropped as training clips are and resized, `face_crop`), or
  `synthetic:<id>`, frame 0 of a held-out synthetic video;
- `load_driving_track`: the landmark track that drives a reenactment: a `.npz` landmark file,
  a `.npy` `[T, L, 3]` array, or `synthetic:<id>` (whose real frames are then read lazily,
  a window at a time, so a long track costs no memory up front). A FaceMesh track driving a
  68-point model is converted to iBUG-68 order (`landmark_layouts`);
- `extract_driving_landmarks`: a driving *video* turned into such a landmark file, beside the
  output, with a progress bar;
- `load_driving_frames`: what drives the LEO animator: a video file (face-cropped per frame as
  `prepare_data` crops training clips, unless already at the animator's size), a folder of
  frames, a motion-code `.npz`, or `synthetic:<id>`.

The `read_*` functions do the face work before any model is loaded, so a photo or video
without a face is refused before the model's load and compile. Every bad input raises
`InputError`, one line naming the flag and the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from data_pipelines.landmark_files import load_landmarks, save_landmarks
from data_pipelines.landmark_layouts import to_model_layout
from data_pipelines.sources import SyntheticFaceSource

SYNTHETIC_PREFIX = "synthetic:"
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_SYNTHETIC_FRAMES = 256  # a synthetic driving video's length when --frames is not given
LANDMARK_SUFFIXES = (".npz", ".npy")
# Side of driving-video face crops made before the animator (and so its size) is loaded;
# resized to the animator's side after. LIA's own frame size.
PRELOAD_CROP_SIZE = 256


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


@dataclasses.dataclass(frozen=True, eq=False)
class SourcePhoto:
    """A source image file read before the model is loaded: its pixels and, unless it is
    already at the model's size, its face (FaceMesh points normalised to the image; None when
    no face was found, which `at_size` refuses unless the image needs no crop)."""

    path: str
    flag: str
    image_HWC: np.ndarray  # uint8
    points_LC: np.ndarray | None

    def at_size(self, size: int) -> np.ndarray:
        """float32 `[size, size, 3]` in [-1, 1]: the image as is, or its face crop."""
        height, width = self.image_HWC.shape[:2]
        if (height, width) == (size, size):
            return to_unit_range(self.image_HWC)
        if self.points_LC is None:
            raise InputError(_no_face(self.flag, self.path, width, height, size))
        from data_pipelines.face_crop import crop_at_points

        return to_unit_range(crop_at_points(self.image_HWC, self.points_LC, size).image_HWC)


def _no_face(flag: str, path: str, width: int, height: int, size: int | None) -> str:
    wanted = f"a {size}x{size} image" if size else "an image"
    return (
        f"{flag} {path}: expected {wanted} (the model's frame size) or a photo with one "
        f"visible face; no face found (FaceMesh) in this {width}x{height} image"
    )


def read_source_photo(
    path: str, flag: str = "--source", size: int | None = None, landmarker=None
) -> SourcePhoto:
    """Reads an image file and finds its face (skipped when it is `size`x`size` already).

    size: the model's frame size, or None before the model is loaded; then a faceless image
      that is not square is refused here, and a square one is kept (it may be the model's size).
    """
    from data_pipelines.face_crop import read_photo

    if not os.path.isfile(path):
        raise InputError(f"{flag} {path}: no such image file")
    try:
        rgb = read_photo(path)
    except ValueError as e:
        raise InputError(f"{flag} {e}") from None
    height, width = rgb.shape[:2]
    if (height, width) == (size, size):
        return SourcePhoto(path, flag, rgb, None)
    from data_pipelines.face_landmarker import image_landmarks

    points_LC = image_landmarks(rgb, landmarker)
    if points_LC is None and (size is not None or height != width):
        raise InputError(_no_face(flag, path, width, height, size))
    return SourcePhoto(path, flag, rgb, points_LC)


def load_source_image(spec: str | SourcePhoto, config, flag: str = "--source") -> np.ndarray:
    """The source as float32 `[H, W, 3]` in [-1, 1] at the model's frame size."""
    size = config.data.image_size  # in pixels, also for a model that denoises latents
    if isinstance(spec, SourcePhoto):
        return spec.at_size(size)
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = synthetic_id(spec, flag)
        return to_unit_range(held_out_video(config, video_id, 1).read_frames(video_id, [0])[0])
    return read_source_photo(spec, flag, size).at_size(size)


def is_video_spec(spec: str) -> bool:
    """A driving input that is a video file (not synthetic:, not a landmark or code file)."""
    return (
        not spec.startswith(SYNTHETIC_PREFIX)
        and not spec.lower().endswith(LANDMARK_SUFFIXES)
        and os.path.isfile(spec)
    )


def landmarks_path_for(out: str) -> str:
    """Where a driving video's extracted landmarks go: `<out stem>.landmarks.npz`."""
    return f"{os.path.splitext(out)[0]}.landmarks.npz"


def extract_driving_landmarks(
    video: str, out: str, flag: str = "--driving", landmarker=None, progress: bool = True
) -> str:
    """Extracts a driving video's FaceMesh landmarks (its longest face track, in the
    coordinates of the face crop), writes them beside `out` and returns that file's path,
    reusable as `--driving`."""
    from data_pipelines.face_preparation import CropSettings, driving_landmarks

    try:
        # The crop side only sizes frames this call throws away; landmarks are crop-relative.
        track = driving_landmarks(video, CropSettings(size=32), landmarker, progress=progress)
    except ValueError as e:  # BadVideoError names the file and the reason (no face, ...)
        raise InputError(f"{flag} {e}") from None
    path = landmarks_path_for(out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_landmarks(path, track.landmarks_TLC, track.fps, track.layout)
    return path


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
        if not spec.lower().endswith(".npz"):
            raise InputError(
                f"{flag} {spec}: expected a video, a landmark .npz/.npy or synthetic:<id>"
            )
        track = load_landmarks(spec)  # raises a one-line ValueError naming the file
        landmarks, fps = track.landmarks_TLC, track.fps
        if landmarks.ndim == 3 and landmarks.shape[1] != num_landmarks:
            try:
                landmarks = to_model_layout(
                    landmarks, track.layout, num_landmarks, f"{flag} {spec}"
                )
            except ValueError as e:
                raise InputError(str(e)) from None
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


@dataclasses.dataclass(frozen=True, eq=False)
class DrivingVideo:
    """A driving video for the animator, read before the model is loaded: its face crops at
    `PRELOAD_CROP_SIZE`, or None for a square video, which is decided on once the animator's
    size is known (used as is at that size, face-cropped otherwise)."""

    path: str
    crops_THWC: np.ndarray | None  # uint8
    fps: float


def face_crop_frames(path: str, size: int, frames: int | None, flag: str = "--driving",
                     landmarker=None) -> tuple[np.ndarray, float]:  # fmt: skip
    """`(uint8 [T, size, size, 3], fps)`: the video's longest face track, cropped per frame
    around the tracked FaceMesh points with the box smoothed over time, exactly as
    `prepare_data` crops training clips (`face_preparation.prepare_video`)."""
    from data_pipelines.face_landmarker import FaceMeshLandmarker
    from data_pipelines.face_preparation import CropSettings, prepare_video

    try:
        clips = prepare_video(
            path, landmarker or FaceMeshLandmarker(), CropSettings(size=size), progress=True
        )
    except ValueError as e:  # BadVideoError names the file and the reason (no face, ...)
        raise InputError(f"{flag} {e}") from None
    clip = max(clips, key=lambda c: len(c.frames_THWC))
    return clip.frames_THWC[:frames] if frames else clip.frames_THWC, clip.landmarks.fps


def read_driving_video(path: str, frames: int | None, flag: str = "--driving",
                       landmarker=None) -> DrivingVideo:  # fmt: skip
    """Checks a driving video and, unless it is square, face-crops it (before any load)."""
    from data_pipelines.video_decoding import probe_video

    try:
        probe = probe_video(path)
    except ValueError as e:  # BadVideoError names the file
        raise InputError(f"{flag} {e}") from None
    if probe.width == probe.height:
        return DrivingVideo(path, None, probe.fps)
    crops, fps = face_crop_frames(path, PRELOAD_CROP_SIZE, frames, flag, landmarker)
    return DrivingVideo(path, crops, fps)


def _resized(frames_THWC: np.ndarray, size: int) -> np.ndarray:
    if frames_THWC.shape[1:3] == (size, size):
        return frames_THWC
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in frames_THWC]
    )


def _video_frames(video: DrivingVideo, size: int, frames: int | None):
    if video.crops_THWC is not None:
        return to_unit_range(_resized(video.crops_THWC, size)), None, video.fps
    from data_pipelines.video_decoding import decode_frames, probe_video

    probe = probe_video(video.path)  # BadVideoError (a ValueError) names the file
    if (probe.height, probe.width) != (size, size):
        crops, fps = face_crop_frames(video.path, size, frames)
        return to_unit_range(crops), None, fps
    T = min(frames or probe.num_frames, probe.num_frames)
    return to_unit_range(decode_frames(probe, np.arange(T))), None, probe.fps


def load_driving_frames(spec: str | DrivingVideo, config, frames: int | None, motion_dim: int):
    """`(frames_THWC in [-1, 1] or None, codes_TM or None, fps)` of the animator's driving input."""
    check_frames(frames, lowest=1)
    size = config.data.image_size
    if isinstance(spec, DrivingVideo):
        return _video_frames(spec, size, frames)
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
    return _video_frames(DrivingVideo(spec, None, 0.0), size, frames)
