"""Video files through PyAV: a cheap probe, and frame-accurate random access to a few frames.

A training clip needs K frames out of hundreds, so decoding works from a probe made once per
file: demuxing (no decoding) lists every packet's timestamp and keyframe flag, which gives the
exact frame count, the real frame rate and where each frame's GOP starts. `decode_frames` then
seeks to the keyframe before each wanted frame and decodes forward only as far as it must,
converting only the wanted frames to RGB.

Every frame is identified by its presentation timestamp, never by counting: a frame that does
not come out of the decoder, or comes out corrupt, raises `BadVideoError`, so a broken file
never yields a wrong or duplicated frame in its place. Files we cannot train on (empty,
unreadable, too short, variable frame rate, more than 8 bits per channel, an alpha channel)
are rejected by the probe with a short reason key (`SKIP_REASONS`) for the caller's summary;
data preparation accepts variable frame rates and high bit depths (see `probe_video`).
Rotation metadata is applied, grayscale becomes RGB, and odd sizes are fine.
"""

import dataclasses
import os

import av
import numpy as np

# Reason keys of rejected files, in the order summaries list them.
SKIP_REASONS = (
    "empty_file",
    "unreadable",
    "no_video_stream",
    "truncated",
    "too_short",
    "variable_frame_rate",
    "high_bit_depth",
    "alpha_channel",
    "corrupt_frame",
    "no_landmarks",
    "no_face",
)
# Frame gaps more than this fraction away from the median gap mean variable frame rate. Timing
# rounded to a coarse time base (29.97 fps in milliseconds: 33 and 34) stays well inside it.
_VFR_TOLERANCE = 0.1


class BadVideoError(ValueError):
    """A file that cannot give correct frames: `reason` is a key of `SKIP_REASONS`."""

    def __init__(self, path: str, reason: str, detail: str):
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{path}: {reason.replace('_', ' ')} ({detail})")
        self.path, self.reason, self.detail = path, reason, detail


@dataclasses.dataclass(frozen=True, eq=False)
class VideoProbe:
    """What the demuxer says about a video, in presentation order (picklable, no pixels)."""

    path: str
    num_frames: int
    fps: float
    width: int  # of the upright frame, after rotation
    height: int
    rotation: int  # degrees counterclockwise applied to decoded frames (0, 90, 180, 270)
    pix_fmt: str
    codec: str
    pts_T: np.ndarray  # int64 presentation timestamps, sorted, one per frame
    keyframe_T: np.ndarray  # bool, frame t starts a GOP (decoding can begin there)
    time_base: float = 0.0  # seconds per pts tick
    # Frame gaps differ (only when probed with allow_vfr); `fps` is then the average rate.
    variable_frame_rate: bool = False

    @property
    def times_s_T(self) -> np.ndarray:
        """float64 [T] presentation time of each frame, seconds from the first."""
        return (self.pts_T - self.pts_T[0]) * self.time_base


def _check_pixel_format(path: str, pix_fmt: str, allow_high_bit_depth: bool) -> None:
    fmt = av.VideoFormat(pix_fmt)
    if any(c.is_alpha for c in fmt.components):
        raise BadVideoError(path, "alpha_channel", f"pixel format {pix_fmt}; flatten it first")
    bits = max(c.bits for c in fmt.components)
    if bits > 8 and not allow_high_bit_depth:
        raise BadVideoError(
            path, "high_bit_depth", f"pixel format {pix_fmt} has {bits} bits; expected 8"
        )


def probe_video(
    path: str | os.PathLike,
    *,
    min_frames: int = 1,
    verify: bool = False,
    allow_vfr: bool = False,
    allow_high_bit_depth: bool = False,
) -> VideoProbe:
    """Demuxes `path` (no decoding unless `verify`) and returns its probe.

    `verify=True` also decodes every frame once, so a corrupt frame in the middle is found now
    rather than when a clip asks for it. Raises `BadVideoError` for a file to skip.

    Training reads constant-rate 8-bit video only (its clip times come from one fps).
    Preparation passes `allow_vfr` (frames are then re-timed from `times_s_T`) and
    `allow_high_bit_depth` (frames are converted to 8-bit RGB on decoding).
    """
    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise BadVideoError(path, "empty_file", "0 bytes")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise BadVideoError(path, "unreadable", f"not a readable video container: {e}") from None
    with container:
        if not container.streams.video:
            raise BadVideoError(path, "no_video_stream", f"format {container.format.name}")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.pix_fmt is None or not ctx.width or not ctx.height:
            raise BadVideoError(path, "unreadable", "the stream has no decodable picture size")
        _check_pixel_format(path, ctx.pix_fmt, allow_high_bit_depth)
        pts, keys, corrupt = [], [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # The flush packet at the end.
                    continue
                if packet.is_corrupt:
                    corrupt.append(len(pts))
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    raise BadVideoError(path, "unreadable", "a packet has no timestamp")
                pts.append(stamp)
                keys.append(packet.is_keyframe)
        except av.error.FFmpegError as e:
            raise BadVideoError(path, "truncated", f"demuxing stopped: {e}") from None
        if corrupt:
            # A damaged last packet is where the file was cut; one before it is damage inside.
            if corrupt == [len(pts) - 1]:
                raise BadVideoError(path, "truncated", f"the file ends inside frame {corrupt[0]}")
            raise BadVideoError(path, "corrupt_frame", f"packet {corrupt[0]} is damaged")
        listed = stream.frames  # From the header where the container has one (mp4, avi).
        if listed and listed != len(pts):
            raise BadVideoError(
                path, "truncated", f"the header lists {listed} frames, {len(pts)} are readable"
            )
        if len(pts) < max(min_frames, 1):
            raise BadVideoError(
                path, "too_short", f"{len(pts)} frames, at least {max(min_frames, 1)} needed"
            )
        order = np.argsort(pts, kind="stable")
        pts_T = np.asarray(pts, np.int64)[order]
        keyframe_T = np.asarray(keys, bool)[order]
        if np.any(np.diff(pts_T) == 0):
            raise BadVideoError(path, "corrupt_frame", "two frames share a timestamp")
        fps, variable = _frame_rate(path, pts_T, stream, allow_vfr)
        rotation = _rotation(stream, container)
        width, height = ctx.width, ctx.height
    if rotation in (90, 270):
        width, height = height, width
    probe = VideoProbe(
        path=path,
        num_frames=len(pts_T),
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        pix_fmt=ctx.pix_fmt,
        codec=ctx.name,
        pts_T=pts_T,
        keyframe_T=keyframe_T,
        time_base=float(stream.time_base),
        variable_frame_rate=variable,
    )
    if verify:
        for _ in iterate_frames(probe):
            pass
    return probe


def _frame_rate(path: str, pts_T: np.ndarray, stream, allow_vfr: bool) -> tuple[float, bool]:
    """(frames per second, whether the gaps vary); the average rate of a variable one."""
    if len(pts_T) < 2:
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise BadVideoError(path, "unreadable", "one frame and no frame rate in the header")
        return float(rate), False
    gaps = np.diff(pts_T).astype(np.float64)
    median = float(np.median(gaps))
    worst = float(np.abs(gaps - median).max())
    variable = worst > max(1.0, _VFR_TOLERANCE * median)
    if variable and not allow_vfr:
        raise BadVideoError(
            path,
            "variable_frame_rate",
            f"frame gaps from {gaps.min():g} to {gaps.max():g} ticks of {stream.time_base}",
        )
    seconds = float((pts_T[-1] - pts_T[0]) * stream.time_base)
    return (len(pts_T) - 1) / seconds, variable


def _rotation(stream, container) -> int:
    # The display matrix arrives on decoded frames (`frame.rotation`, counterclockwise degrees);
    # decode the first frame to read it, as the stream-level side data is not exposed.
    container.seek(0, stream=stream)
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation / 90.0)) % 4 * 90
    except av.error.FFmpegError:
        return 0  # The frame-level decode will report the file.
    return 0


def _upright_rgb(frame, rotation: int) -> np.ndarray:
    rgb_HWC = frame.to_ndarray(format="rgb24")
    if rotation:
        # np.rot90 turns counterclockwise for k > 0, the display matrix's sense.
        rgb_HWC = np.ascontiguousarray(np.rot90(rgb_HWC, k=rotation // 90))
    return rgb_HWC


def _open_stream(probe: VideoProbe):
    try:
        container = av.open(probe.path)
    except av.error.FFmpegError as e:
        raise BadVideoError(probe.path, "unreadable", f"no longer opens: {e}") from None
    return container, container.streams.video[0]


def iterate_frames(probe: VideoProbe):
    """Yields every frame in order as upright uint8 [H, W, 3]; checks each one's timestamp."""
    container, stream = _open_stream(probe)
    with container:
        expected = 0
        try:
            for frame in container.decode(stream):
                if frame.is_corrupt or expected >= probe.num_frames:
                    raise BadVideoError(probe.path, "corrupt_frame", f"frame {expected}")
                if frame.pts != probe.pts_T[expected]:
                    raise BadVideoError(
                        probe.path, "corrupt_frame", f"frame {expected} did not decode"
                    )
                yield _upright_rgb(frame, probe.rotation)
                expected += 1
        except av.error.FFmpegError as e:
            raise BadVideoError(probe.path, "corrupt_frame", f"at frame {expected}: {e}") from None
    if expected != probe.num_frames:
        raise BadVideoError(
            probe.path, "corrupt_frame", f"{expected} of {probe.num_frames} frames decoded"
        )


def decode_frames(probe: VideoProbe, indices) -> np.ndarray:
    """uint8 `[k, H, W, 3]` upright frames at `indices` (any order, repeats allowed).

    Seeks to the keyframe at or before each wanted frame when that is ahead of the decoder,
    so a sparse clip decodes only the GOPs it touches.
    """
    indices = np.asarray(indices, np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= probe.num_frames):
        raise IndexError(
            f"{probe.path}: frame indices must lie in [0, {probe.num_frames}), got "
            f"{indices.tolist()}"
        )
    wanted = np.unique(indices)
    key_positions = np.flatnonzero(probe.keyframe_T)
    index_of_pts = {int(p): t for t, p in enumerate(probe.pts_T)}
    got: dict[int, np.ndarray] = {}
    container, stream = _open_stream(probe)
    with container:
        position = -1  # Index of the last frame the decoder produced.
        frames, from_top = None, False
        for target in wanted:
            target = int(target)
            start = _keyframe_before(key_positions, target)
            if frames is None or start > position:
                container.seek(int(probe.pts_T[start]), stream=stream, backward=True)
                frames = _decode_stream(probe, container, stream)
                position, from_top = -1, False
            while target not in got:
                frame = next(frames, None)
                if frame is None:
                    raise BadVideoError(probe.path, "corrupt_frame", f"frame {target} is missing")
                index = index_of_pts.get(frame.pts)
                if index is None or frame.is_corrupt:
                    raise BadVideoError(
                        probe.path, "corrupt_frame", f"unexpected frame at pts {frame.pts}"
                    )
                if index > target:
                    if position < 0 and not from_top:
                        # An imprecise seek landed past it: decode from the top instead.
                        container.seek(int(probe.pts_T[0]), stream=stream, backward=True)
                        frames, from_top = _decode_stream(probe, container, stream), True
                        continue
                    raise BadVideoError(probe.path, "corrupt_frame", f"frame {target} is missing")
                position = index
                if index == target:
                    got[target] = _upright_rgb(frame, probe.rotation)
    return (
        np.stack([got[int(i)] for i in indices])
        if indices.size
        else np.zeros((0, probe.height, probe.width, 3), np.uint8)
    )


def _keyframe_before(key_positions: np.ndarray, target: int) -> int:
    i = int(np.searchsorted(key_positions, target, side="right")) - 1
    return int(key_positions[i]) if i >= 0 else 0


def _decode_stream(probe: VideoProbe, container, stream):
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as e:
        raise BadVideoError(probe.path, "corrupt_frame", f"decoding failed: {e}") from None
