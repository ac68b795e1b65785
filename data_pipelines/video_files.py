"""A folder of video files (mp4, mov, webm, avi, mkv) as a `VideoSource` (`data.source=video_dir`).

Layout: `root/<split>/**/<name>.<ext>`, each video with its landmark file `<name>.npz` beside
it (what `python -m launch.prepare_data` writes). Building the source probes every file once
(demuxing, no decoding; `verify=True` also decodes every frame) and skips the ones that cannot
give correct clips; see `folder_scan` for identities and the summary. Frame times come from the
file's own frame rate, and frames are decoded on demand, only those a clip asks for.

Frames are returned as the centred square of the upright frame resized to `image_size`, with
the landmarks mapped into that square; `prepare_data` output is already square.
"""

import concurrent.futures
import os

import numpy as np

from data_pipelines.folder_scan import (
    ScanReport,
    SquareCrop,
    check_landmark_count,
    identity_ids,
    load_track,
    split_dir,
)
from data_pipelines.sources import VideoRecord
from data_pipelines.video_decoding import BadVideoError, VideoProbe, decode_frames, probe_video

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".avi", ".mkv")
# Probing waits on file reads and on FFmpeg (which releases the GIL), so a few threads help
# even on two cores.
_PROBE_THREADS = 4


def find_videos(directory: str) -> list[str]:
    """Paths of the video files under `directory`, relative to it, in a stable sorted order."""
    found = []
    for parent, dirs, files in os.walk(directory, followlinks=True):  # Split folders may be links.
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(parent, name), directory))
    return sorted(found)


def landmark_path(video_path: str) -> str:
    return os.path.splitext(video_path)[0] + ".npz"


def _probe_one(path: str, min_frames: int, verify: bool) -> VideoProbe | BadVideoError:
    try:
        probe = probe_video(path, min_frames=min_frames, verify=verify)
    except BadVideoError as e:
        return e
    if not os.path.exists(landmark_path(path)):
        return BadVideoError(path, "no_landmarks", f"expected {landmark_path(path)}")
    return probe


class VideoFileSource:
    """The videos of one split of a video folder (see the module docstring)."""

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
        names = find_videos(directory)
        paths = [os.path.join(directory, n) for n in names]
        with concurrent.futures.ThreadPoolExecutor(_PROBE_THREADS) as pool:
            results = list(pool.map(lambda p: _probe_one(p, min_frames, verify), paths))
        kept_names, self._probes = [], []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BadVideoError):
                self.report.skip(result)
                continue
            # A mismatched landmark file is a preparation bug, not a bad video: stop here.
            check_landmark_count(landmark_path(result.path), result.num_frames, result.path)
            kept_names.append(name)
            self._probes.append(result)
            self.report.keep(result.width, result.height)
            if result.rotation:
                self.report.adjusted["rotated"] += 1
            if result.pix_fmt.startswith("gray"):
                self.report.adjusted["grayscale"] += 1
        if not self._probes:
            raise ValueError(
                f"data.root: no usable videos in {directory} (skipped: {self.report.reasons()})"
            )
        self._identity_ids = identity_ids(directory, split, kept_names)
        self.names = kept_names

    def __len__(self) -> int:
        return len(self._probes)

    def probe(self, video_id: int) -> VideoProbe:
        if not 0 <= video_id < len(self._probes):
            raise IndexError(f"video_id {video_id} out of range for {len(self._probes)} videos")
        return self._probes[video_id]

    def _crop(self, probe: VideoProbe) -> SquareCrop:
        return SquareCrop(probe.width, probe.height, self.image_size)

    def __getitem__(self, video_id: int) -> VideoRecord:
        video_id = int(video_id)
        probe = self.probe(video_id)
        landmarks_TLC = load_track(landmark_path(probe.path), probe.num_frames, probe.path)
        return VideoRecord(
            video_id=video_id,
            identity_id=self._identity_ids[video_id],
            num_frames=probe.num_frames,
            fps=probe.fps,
            landmarks_TLC=self._crop(probe).landmarks(landmarks_TLC),
        )

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        probe = self.probe(int(video_id))
        return self._crop(probe).frames(decode_frames(probe, indices))

    def __repr__(self) -> str:
        return f"VideoFileSource(root={self.root!r}, split={self.split!r}, videos={len(self)})"
