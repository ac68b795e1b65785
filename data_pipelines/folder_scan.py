"""What the real-data sources share: the skip summary, identities, landmarks, square frames.

A real folder is scanned once when its source is built. Each file that cannot give correct
clips is skipped with one warning line naming it and the reason, and counted in a
`ScanReport`; files that need a fix-up to be correct (rotation, grayscale, an odd or
non-square size) are kept and counted too, so the summary says what was done to the data.

Identities: a `videos.json` beside the videos (the synthetic export writes one) maps each
video to its identity id; otherwise a video in a subfolder (`id10001/<yt_id>/00001.mp4`,
VoxCeleb) belongs to that top folder's identity, and a video directly in the split folder
(CelebV-HQ, TaichiHD) is its own identity. Test identities start at `TEST_IDENTITY_OFFSET`,
as in the synthetic data, so no id is shared between splits.
"""

import collections
import dataclasses
import json
import os
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from data_pipelines.landmark_files import load_landmarks
from data_pipelines.synthetic_faces import SPLITS, TEST_IDENTITY_OFFSET
from data_pipelines.video_decoding import SKIP_REASONS, BadVideoError


@dataclasses.dataclass
class ScanReport:
    """Counts of one scan: files kept, skipped by reason, and fix-ups applied to kept files."""

    where: str
    kept: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    adjusted: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped_files: list = dataclasses.field(default_factory=list)

    def skip(self, error: BadVideoError) -> None:
        logging.warning("skipping %s", error)
        self.skipped[error.reason] += 1
        self.skipped_files.append((error.path, error.reason))

    def keep(self, width: int, height: int) -> None:
        """Counts a kept file and the frame-geometry fix-ups every reader applies to it."""
        self.kept += 1
        if width != height:
            self.adjusted["center_cropped"] += 1
        if width % 2 or height % 2:
            self.adjusted["odd_size"] += 1

    @property
    def total(self) -> int:
        return self.kept + sum(self.skipped.values())

    def reasons(self) -> str:
        """`reason count, ...` of the skipped files, in `SKIP_REASONS` order."""
        return ", ".join(f"{r} {self.skipped[r]}" for r in SKIP_REASONS if self.skipped[r])

    def summary(self) -> str:
        reasons = self.reasons()
        fixes = [f"{k} {v}" for k, v in sorted(self.adjusted.items())]
        return (
            f"{self.where}: {self.total} videos in, {self.kept} kept, "
            f"{sum(self.skipped.values())} skipped"
            + (f" ({reasons})" if reasons else "")
            + (f"; adjusted: {', '.join(fixes)}" if fixes else "")
        )


def split_dir(root: str, split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    path = os.path.join(os.fspath(root), split)
    if not os.path.isdir(path):
        raise ValueError(f"data.root: expected a folder {path} with the {split} videos")
    return path


def identity_ids(directory: str, split: str, names: list[str]) -> list[int]:
    """The identity id of each video, named by its path relative to the split folder."""
    index_path = os.path.join(directory, "videos.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        key = [n.split(os.sep)[0] for n in names]
        missing = [k for k in key if k not in index]
        if missing:
            raise ValueError(f"{index_path}: expected an entry for {missing[0]!r}")
        return [int(index[k]["identity_id"]) for k in key]
    labels = [n.split(os.sep)[0] if os.sep in n else os.path.splitext(n)[0] for n in names]
    ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    offset = 0 if split == "train" else TEST_IDENTITY_OFFSET
    return [offset + ids[label] for label in labels]


def landmark_frame_count(path: str) -> int:
    """Frames in a landmark file, from the array header only (no 1 MB read per video)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("landmarks.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(f)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: expected a landmark .npz file, could not read it ({e})") from e
    return int(shape[0])


def check_landmark_count(path: str, num_frames: int, video: str) -> None:
    """A landmark file whose length differs from its video's is an error, not a skip."""
    count = landmark_frame_count(path)
    if count != num_frames:
        raise ValueError(
            f"{path}: expected landmarks for the {num_frames} frames of {video}, got {count}"
        )


def load_track(path: str, num_frames: int, video: str) -> np.ndarray:
    track = load_landmarks(path)
    if track.landmarks_TLC.shape[0] != num_frames:
        raise ValueError(
            f"{path}: expected landmarks for the {num_frames} frames of {video}, got "
            f"{track.landmarks_TLC.shape[0]}"
        )
    return track.landmarks_TLC


@dataclasses.dataclass(frozen=True)
class SquareCrop:
    """The centred square crop of a W x H frame, resized to `size`: frames and landmarks."""

    width: int
    height: int
    size: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        side = min(self.width, self.height)
        x0, y0 = (self.width - side) // 2, (self.height - side) // 2
        return x0, y0, x0 + side, y0 + side

    def frames(self, frames_KHWC: np.ndarray) -> np.ndarray:
        k, h, w, _ = frames_KHWC.shape
        if (w, h) != (self.width, self.height):
            raise ValueError(f"expected {self.width}x{self.height} frames, got {w}x{h}")
        if w == h == self.size:
            return frames_KHWC
        return (
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(f).resize(
                            (self.size, self.size), Image.BILINEAR, box=self.box
                        )
                    )
                    for f in frames_KHWC
                ]
            )
            if k
            else np.zeros((0, self.size, self.size, 3), np.uint8)
        )

    def landmarks(self, landmarks_TLC: np.ndarray) -> np.ndarray:
        """Landmarks normalised to the full frame -> normalised to the crop (z scales with x)."""
        if self.width == self.height:
            return landmarks_TLC
        x0, y0, x1, _ = self.box
        side = float(x1 - x0)
        out = np.array(landmarks_TLC, np.float32, copy=True)
        out[..., 0] = (out[..., 0] * self.width - x0) / side
        out[..., 1] = (out[..., 1] * self.height - y0) / side
        out[..., 2] = out[..., 2] * self.width / side
        return out
