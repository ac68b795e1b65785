"""Writes uint8 RGB frames as a video file through PyAV's encoders.

`prepare_data` writes its face crops with it, the data benchmark writes its test folders with
it, and tests make their fixture videos (several codecs and containers) with it. Short GOPs
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
    path = os.fspath(path)
    frames_THWC = np.asarray(frames_THWC)
    if frames_THWC.ndim != 4 or frames_THWC.shape[-1] != 3 or frames_THWC.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected uint8 frames [T, H, W, 3], got {frames_THWC.dtype} "
            f"{frames_THWC.shape}"
        )
    ext = os.path.splitext(path)[1].lower()
    default_codec, default_pix_fmt = DEFAULT_CODECS.get(ext, ("libx264", "yuv420p"))
    codec = codec or default_codec
    pix_fmt = pix_fmt or default_pix_fmt
    rate = fractions.Fraction(fps).limit_denominator(1001)
    encoder_options = {"g": str(keyframe_interval)}
    if codec in ("libx264", "libx265", "libvpx-vp9", "libvpx"):
        encoder_options["crf"] = str(quality)
    if codec == "libvpx-vp9":
        encoder_options["b"] = "0"  # Constant quality, not a bitrate target.
    if codec == "libx265":
        encoder_options["x265-params"] = "log-level=none"
    encoder_options.update(options or {})
    tmp_path = f"{path}.partial{ext}"
    try:
        with av.open(tmp_path, "w", options=container_options or {}) as container:
            stream = container.add_stream(codec, rate=rate, options=encoder_options)
            stream.width, stream.height = frames_THWC.shape[2], frames_THWC.shape[1]
            stream.pix_fmt = pix_fmt
            if pts_T is not None:
                stream.codec_context.time_base = fractions.Fraction(1, 1000)
            if rotation:
                stream.set_display_rotation(rotation)
            for t, rgb_HWC in enumerate(frames_THWC):
                frame = av.VideoFrame.from_ndarray(rgb_HWC, format="rgb24")
                if pts_T is not None:
                    frame.pts = int(pts_T[t])
                    frame.time_base = fractions.Fraction(1, 1000)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp_path, path)  # Readers never see a half-written video.
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
