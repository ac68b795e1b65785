"""The videos the inference commands write, streamed chunk by chunk as frames are made.

`PanelVideos` writes `<out>` (the generated frames) and `<stem>_side_by_side.mp4` (input panels
beside the output: source, driving landmarks or frames, the real video when there is one) and
optionally `<stem>_grid.png`, one row per evenly spaced frame. Each `append` encodes its frames
at once, so a 20,000-frame reenactment holds one chunk in memory, not the video.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from data_pipelines.video_writing import VideoWriter

GRID_ROWS = 8


def to_display(frames_THWC: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] frames to uint8 at `size` pixels (nearest neighbour keeps the pixels honest)."""
    uint8 = np.clip(np.round((np.asarray(frames_THWC) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.NEAREST)) for f in uint8]
    )


def render_landmarks(landmarks_TLC: np.ndarray, size: int) -> np.ndarray:
    """Dots at each landmark's (x, y) on black: uint8 `[T, size, size, 3]`."""
    frames = []
    radius = max(1, size // 64)
    for points_LC in landmarks_TLC:
        image = Image.new("RGB", (size, size))
        draw = ImageDraw.Draw(image)
        for x, y in points_LC[:, :2] * size:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(90, 230, 120))
        frames.append(np.asarray(image))
    return np.stack(frames)


def grid_picks(num_frames: int, rows: int = GRID_ROWS) -> np.ndarray:
    """The evenly spaced frames shown in the grid PNG."""
    return np.linspace(0, num_frames - 1, min(rows, num_frames)).round().astype(int)


class PanelVideos:
    """Streams the generated video, its side-by-side video and (optionally) the frame grid.

    total_frames: the video's length, known up front so the grid's rows can be kept as
      they stream past; 0 writes no grid.
    side_by_side: False writes the generated video alone.
    """

    def __init__(self, out: str, fps: float, display: int, *, total_frames: int = 0,
                 side_by_side: bool = True):  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        self.out, self.display = out, display
        stem = os.path.splitext(out)[0]
        self.side_path = f"{stem}_side_by_side.mp4" if side_by_side else None
        self.grid_path = f"{stem}_grid.png" if total_frames and side_by_side else None
        self._picks = set(grid_picks(total_frames).tolist()) if self.grid_path else set()
        self._rows: list[np.ndarray] = []
        self._video = VideoWriter(out, fps)
        self._side = VideoWriter(self.side_path, fps) if self.side_path else None
        self._written = 0

    def append(self, generated_THWC: np.ndarray, panels_u8=()) -> None:
        """Writes `generated_THWC` ([-1, 1]) and, beside it, the uint8 display panels (each
        `[n, display, display, 3]`, or `[1, ...]` repeated: a still source)."""
        generated = to_display(generated_THWC, self.display)
        self._video.append(generated)
        if self._side is not None:
            side = [np.broadcast_to(p, generated.shape) for p in panels_u8]
            side_THWC = np.concatenate(side + [generated], axis=2)
            self._side.append(side_THWC)
            for t in range(len(side_THWC)):
                if self._written + t in self._picks:
                    self._rows.append(side_THWC[t])
        self._written += len(generated)

    def close(self) -> list[str]:
        """Finishes every file; returns their paths."""
        paths = [self._video.close()]
        if self._side is not None:
            paths.append(self._side.close())
        if self.grid_path and self._rows:
            # One row per picked frame: the panels and the generated frame side by side.
            Image.fromarray(np.concatenate(self._rows, axis=0)).save(self.grid_path)
            paths.append(self.grid_path)
        return paths

    def abort(self) -> None:
        self._video.abort()
        if self._side is not None:
            self._side.abort()

    def __enter__(self) -> PanelVideos:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
