"""Folders of frame images in the FOMM/LIA layout as a `VideoSource` (`data.source=frame_dir`).

Layout: `root/<split>/<video>/<frame>.png|jpg`, frames in file-name order, and the video's
landmark file as `<video>/landmarks.npz` (the synthetic export's layout) or `<video>.npz` beside
the folder. The frame rate is the landmark file's. Building the source lists every folder and
opens its first frame; `verify=True` opens every frame. A frame that turns out unreadable when
a clip asks for it raises `BadVideoError` rather than being replaced by a neighbour.
"""

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipelines.folder_scan import (
    ScanReport,
    SquareCrop,
    check_landmark_count,
    identity_ids,
    load_track,
    split_dir,
)
from data_pipelines.landmark_files import load_landmarks
from data_pipelines.sources import VideoRecord
from data_pipelines.video_decoding import BadVideoError

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def _landmark_path(video_dir: str) -> str | None:
    for path in (os.path.join(video_dir, "landmarks.npz"), video_dir.rstrip(os.sep) + ".npz"):
        if os.path.exists(path):
            return path
    return None


def _read_image(path: str, video_dir: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in _ALPHA_MODES:
                raise BadVideoError(video_dir, "alpha_channel", f"{path} is {image.mode}")
            if image.mode in _HIGH_BIT_MODES:
                raise BadVideoError(video_dir, "high_bit_depth", f"{path} is {image.mode}")
            if size is not None and image.size != size:
                raise BadVideoError(
                    video_dir, "corrupt_frame", f"{path} is {image.size}, expected {size}"
                )
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise BadVideoError(video_dir, "corrupt_frame", f"{path}: {e}") from None


class _FrameFolder:
    def __init__(self, video_dir: str, frames: list[str], width: int, height: int, mode: str):
        self.video_dir, self.frames = video_dir, frames
        self.width, self.height, self.mode = width, height, mode
        self.landmarks_path = _landmark_path(video_dir)


def _scan_folder(video_dir: str, min_frames: int, verify: bool) -> _FrameFolder:
    frames = sorted(
        f for f in os.listdir(video_dir) if f.lower().endswith(FRAME_EXTENSIONS) and f[0] != "."
    )
    if len(frames) < max(min_frames, 1):
        raise BadVideoError(
            video_dir, "too_short", f"{len(frames)} frames, at least {max(min_frames, 1)} needed"
        )
    first = os.path.join(video_dir, frames[0])
    try:
        with Image.open(first) as image:
            width, height, mode = *image.size, image.mode
    except (OSError, UnidentifiedImageError) as e:
        raise BadVideoError(video_dir, "unreadable", f"{first}: {e}") from None
    if mode in _ALPHA_MODES:
        raise BadVideoError(video_dir, "alpha_channel", f"{first} is {mode}")
    if mode in _HIGH_BIT_MODES:
        raise BadVideoError(video_dir, "high_bit_depth", f"{first} is {mode}")
    if verify:
        for name in frames:
            _read_image(os.path.join(video_dir, name), video_dir, (width, height))
    folder = _FrameFolder(video_dir, frames, width, height, mode)
    if folder.landmarks_path is None:
        raise BadVideoError(video_dir, "no_landmarks", "no landmarks.npz in or beside it")
    return folder


class FrameFolderSource:
    """The frame folders of one split (see the module docstring)."""

    def __init__(
        self,
        root: str,
        split: str,
        *,
        image_size: int,
        min_frames: int,
        verify: bool = False,
    ):
        directory = split_dir(root, split)
        self.root, self.split, self.image_size = os.fspath(root), split, image_size
        self.report = ScanReport(directory)
        names = sorted(
            n
            for n in os.listdir(directory)
            if os.path.isdir(os.path.join(directory, n)) and not n.startswith(".")
        )
        self._folders, self._fps, kept = [], [], []
        for name in names:
            try:
                folder = _scan_folder(os.path.join(directory, name), min_frames, verify)
            except BadVideoError as e:
                self.report.skip(e)
                continue
            check_landmark_count(folder.landmarks_path, len(folder.frames), folder.video_dir)
            self._folders.append(folder)
            self._fps.append(load_landmarks(folder.landmarks_path).fps)
            kept.append(name)
            self.report.keep(folder.width, folder.height)
            if folder.mode in ("L", "P"):
                self.report.adjusted["grayscale" if folder.mode == "L" else "palette"] += 1
        if not self._folders:
            raise ValueError(
                f"data.root: no usable frame folders in {directory} "
                f"(skipped: {self.report.reasons()})"
            )
        self._identity_ids = identity_ids(directory, split, kept)
        self.names = kept

    def __len__(self) -> int:
        return len(self._folders)

    def _folder(self, video_id: int) -> _FrameFolder:
        if not 0 <= video_id < len(self._folders):
            raise IndexError(f"video_id {video_id} out of range for {len(self._folders)} videos")
        return self._folders[video_id]

    def __getitem__(self, video_id: int) -> VideoRecord:
        video_id = int(video_id)
        folder = self._folder(video_id)
        landmarks_TLC = load_track(folder.landmarks_path, len(folder.frames), folder.video_dir)
        crop = SquareCrop(folder.width, folder.height, self.image_size)
        return VideoRecord(
            video_id=video_id,
            identity_id=self._identity_ids[video_id],
            num_frames=len(folder.frames),
            fps=self._fps[video_id],
            landmarks_TLC=crop.landmarks(landmarks_TLC),
        )

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        folder = self._folder(int(video_id))
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(folder.frames)):
            raise IndexError(
                f"{folder.video_dir}: frame indices must lie in [0, {len(folder.frames)}), got "
                f"{indices.tolist()}"
            )
        size = (folder.width, folder.height)
        paths = [os.path.join(folder.video_dir, folder.frames[i]) for i in indices]
        frames_KHWC = np.zeros((len(paths), folder.height, folder.width, 3), np.uint8)
        for k, path in enumerate(paths):
            frames_KHWC[k] = _read_image(path, folder.video_dir, size)
        return SquareCrop(folder.width, folder.height, self.image_size).frames(frames_KHWC)

    def __repr__(self) -> str:
        return f"FrameFolderSource(root={self.root!r}, split={self.split!r}, videos={len(self)})"
