"""Writes uint8 RGB frames as a video file through PyAV's encoders.

`prepare_data` writes its face crops with it, the data benchmark writes its test folders with
it, tests make their fixture videos (several codecs and containers) with it, and the
inference launchers stream generated videos through `VideoWriter`, chunk by chunk. Short GOPs
(`keyframe_interval`) keep random access cheap: a clip frame costs at most one GOP of decoding.
"""

import fractions
import os

import av
import numpy as np

# Container extension -> a codec and pixel format that container carries and PyAV's FFmpeg
# build encodes; `write_video` takes any other pair the container accepts.
DEFAULT_CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mov": ("mjpeg", "yuvj420p"),
    ".mkv": ("ffv1", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
    ".avi": ("mpeg4", "yuv420p"),
}


class VideoWriter:
    """Appends uint8 RGB frames to a video file as they are made; the file appears at `close`.

    Memory stays bounded by what one `append` passes, whatever the video's length: long
    generated videos are written chunk by chunk. Frames go to `<path>.partial<ext>` and are
    renamed into place when closed, so readers never see a half-written video; an exception
    inside a `with` block removes the partial file. Options are those of `write_video`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        *,
        codec: str | None = None,
        pix_fmt: str | None = None,
        keyframe_interval: int = 8,
        quality: int = 18,
        rotation: int = 0,
        timestamps_ms: bool = False,
        options: dict[str, str] | None = None,
        container_options: dict[str, str] | None = None,
    ):
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        default_codec, default_pix_fmt = DEFAULT_CODECS.get(ext, ("libx264", "yuv420p"))
        self.codec = codec or default_codec
        self._pix_fmt = pix_fmt or default_pix_fmt
        self._rate = fractions.Fraction(fps).limit_denominator(1001)
        encoder_options = {"g": str(keyframe_interval)}
        if self.codec in ("libx264", "libx265", "libvpx-vp9", "libvpx"):
            encoder_options["crf"] = str(quality)
        if self.codec == "libvpx-vp9":
            encoder_options["b"] = "0"  # Constant quality, not a bitrate target.
        if self.codec == "libx265":
            encoder_options["x265-params"] = "log-level=none"
        encoder_options.update(options or {})
        self._encoder_options = encoder_options
        self._rotation = rotation
        self._timestamps_ms = timestamps_ms
        self._tmp_path = f"{self.path}.partial{ext}"
        self._container = av.open(self._tmp_path, "w", options=container_options or {})
        self._stream = None
        self.num_frames = 0

    def _open_stream(self, height: int, width: int) -> None:
        stream = self._container.add_stream(
            self.codec, rate=self._rate, options=self._encoder_options
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = self._pix_fmt
        if self._timestamps_ms:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if self._rotation:
            stream.set_display_rotation(self._rotation)
        self._stream = stream

    def append(self, frames_THWC: np.ndarray, pts_T: np.ndarray | None = None) -> None:
        """Encodes `frames_THWC` (uint8 RGB, the first call fixes the size); `pts_T`:
        per-frame timestamps in milliseconds (with `timestamps_ms=True`)."""
        frames_THWC = np.asarray(frames_THWC)
        if frames_THWC.ndim != 4 or frames_THWC.shape[-1] != 3 or frames_THWC.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: expected uint8 frames [T, H, W, 3], got {frames_THWC.dtype} "
                f"{frames_THWC.shape}"
            )
        if self._stream is None:
            self._open_stream(frames_THWC.shape[1], frames_THWC.shape[2])
        elif frames_THWC.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"{self.path}: frames of {frames_THWC.shape[2]}x{frames_THWC.shape[1]} appended "
                f"to a {self._stream.width}x{self._stream.height} video"
            )
        for t, rgb_HWC in enumerate(frames_THWC):
            frame = av.VideoFrame.from_ndarray(rgb_HWC, format="rgb24")
            if pts_T is not None:
                frame.pts = int(pts_T[t])
                frame.time_base = fractions.Fraction(1, 1000)
            self._container.mux(self._stream.encode(frame))
        self.num_frames += len(frames_THWC)

    def close(self) -> str:
        """Flushes the encoder and moves the finished file into place; returns its path."""
        if self._stream is None:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Drops the partial file (after an error)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the error that led here is the one to report
            pass
        if os.path.exists(self._tmp_path):
            os.remove(self._tmp_path)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(
    path: str | os.PathLike,
    frames_THWC: np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    pix_fmt: str | None = None,
    keyframe_interval: int = 8,
    quality: int = 18,
    rotation: int = 0,
    pts_T: np.ndarray | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> None:
    """Encodes `frames_THWC` (uint8 RGB) into `path`; the container comes from the extension.

    - `quality`: x264/x265/VP9 constant-rate factor (lower = better, larger files);
    - `rotation`: display-matrix rotation in degrees counterclockwise (as phones record);
    - `pts_T`: per-frame timestamps in milliseconds, for variable-frame-rate files;
    - `options`: extra encoder options, e.g. `{"x264-params": "bframes=0"}`;
    - `container_options`: muxer options, e.g. `{"movflags": "faststart"}` (index first).
    """
    frames_THWC = np.asarray(frames_THWC)
    if frames_THWC.ndim != 4 or frames_THWC.shape[-1] != 3 or frames_THWC.dtype != np.uint8:
        raise ValueError(
            f"{os.fspath(path)}: expected uint8 frames [T, H, W, 3], got {frames_THWC.dtype} "
            f"{frames_THWC.shape}"
        )
    with VideoWriter(
        path, fps, codec=codec, pix_fmt=pix_fmt, keyframe_interval=keyframe_interval,
        quality=quality, rotation=rotation, timestamps_ms=pts_T is not None, options=options,
        container_options=container_options,
    ) as writer:  # fmt: skip
        writer.append(frames_THWC, pts_T)


def check_output_video(path: str, flag: str = "--out") -> str:
    """One-line refusal of an output video path that cannot be written, before any work:
    an empty path, an unknown container, or a folder that cannot be created or written."""
    if not path:
        raise ValueError(f"{flag}: expected an output video path, got ''")
    ext = os.path.splitext(path)[1].lower()
    if ext not in DEFAULT_CODECS:
        raise ValueError(
            f"{flag} {path}: expected a video file ending in one of {sorted(DEFAULT_CODECS)}"
        )
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder, expected a video file path")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot create its folder ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: its folder {folder} is not writable")
    return path
