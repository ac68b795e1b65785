"""Random-access video sources for grain: per-video metadata, and frames read on demand.

A training clip needs only K (+1) frames out of a video, so a source splits what it knows:
`source[video_id]` returns a small picklable `VideoRecord` (ids, frame count, fps and the
landmarks of every frame), and `source.read_frames(video_id, indices)` decodes or renders just
the frames asked for. `VideoSource` is that interface; the synthetic faces implement it here,
and readers of real video folders implement the same protocol.
"""

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np

from data_pipelines.synthetic_faces import SPLITS, split_videos


@dataclasses.dataclass(frozen=True, eq=False)
class VideoRecord:
    """Metadata of one video: what a pipeline needs before it reads any pixels."""

    video_id: int  # index of the video in its source
    identity_id: int  # who is in it; held-out identities never appear in training sources
    num_frames: int
    fps: float
    landmarks_TLC: np.ndarray  # float32 [num_frames, L, 3], the project's landmark format


@runtime_checkable
class VideoSource(Protocol):
    """A grain `RandomAccessDataSource` of videos whose frames are read separately.

    - `len(source)`: the number of videos;
    - `source[video_id]`: that video's `VideoRecord` (cheap, picklable: it is what grain moves
      between workers);
    - `source.read_frames(video_id, indices)`: uint8 `[k, H, W, 3]` for the given frame
      indices only, in the order given;
    - `source.image_size`: the side H = W of the frames it returns.
    """

    image_size: int

    def __len__(self) -> int: ...

    def __getitem__(self, video_id: int) -> VideoRecord: ...

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray: ...


class SyntheticFaceSource:
    """The synthetic talking faces of one split as a `VideoSource`.

    Video id `i` shows identity `i // videos_per_identity`; all of it is a pure function of
    the constructor arguments, so the source pickles as a handful of numbers and every worker
    renders the same pixels.
    """

    def __init__(
        self,
        split: str,
        *,
        num_identities: int,
        videos_per_identity: int,
        num_frames: int,
        image_size: int,
        fps: float,
        seed: int,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        if num_frames < 1:
            raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
        if fps <= 0:
            raise ValueError(f"fps: expected > 0, got {fps}")
        self.split = split
        self.num_frames = num_frames
        self.image_size = image_size
        self.fps = float(fps)
        self._videos = split_videos(
            split,
            num_identities=num_identities,
            videos_per_identity=videos_per_identity,
            fps=self.fps,
            seed=seed,
        )

    def __len__(self) -> int:
        return len(self._videos)

    def _video(self, video_id: int):
        if not 0 <= video_id < len(self._videos):
            raise IndexError(f"video_id {video_id} out of range for {len(self._videos)} videos")
        return self._videos[video_id]

    def __getitem__(self, video_id: int) -> VideoRecord:
        video_id = int(video_id)
        video = self._video(video_id)
        return VideoRecord(
            video_id=video_id,
            identity_id=video.identity_id,
            num_frames=self.num_frames,
            fps=self.fps,
            landmarks_TLC=video.landmarks(np.arange(self.num_frames)),
        )

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_frames):
            raise IndexError(
                f"frame indices must lie in [0, {self.num_frames}), got {indices.tolist()}"
            )
        return self._video(int(video_id)).frames(indices, self.image_size)

    def factors(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        """float32 `[k, len(synthetic_faces.FACTORS)]`: pose and expression of those frames."""
        return self._video(int(video_id)).factors(np.asarray(indices))

    def __repr__(self) -> str:
        return (
            f"SyntheticFaceSource(split={self.split!r}, videos={len(self)}, "
            f"frames={self.num_frames}, size={self.image_size}, fps={self.fps})"
        )
