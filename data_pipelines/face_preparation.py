"""Turning a raw face video into training clips: landmarks, face tracks, a smoothed square crop.

One video goes through three steps (`prepare_video`):

1. **Landmarks per frame** on the full frame, from a `Landmarker`: MediaPipe's FaceMesh model
   (468 points) run with TF Lite in this environment (`FaceMeshLandmarker`, see
   `face_landmarker`), or the landmark file already beside the video (`ExistingLandmarks`, for
   folders whose landmarks came from elsewhere).
2. **Tracks**: runs of frames with a face. Gaps of up to `max_gap` frames are bridged by
   interpolating the landmarks; a longer gap ends the track. Tracks shorter than `min_frames`
   are dropped. A video with no face at all is skipped (`no_face`).
3. **Crop**: per frame, the square around the landmarks enlarged by `margin`; its centre and
   side are averaged over `smooth_frames` frames so the crop does not jitter, and the frames
   are cropped (black beyond the image border) and resized to `size`. The landmarks are mapped
   into the crop, so they stay normalised to the frame the model sees.

`driving_landmarks` runs the same steps on a driving video and keeps the longest track: the
landmark sequence a reenactment is conditioned on.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

from data_pipelines.face_landmarker import FaceMeshLandmarker
from data_pipelines.face_models import INSTALL_HINT
from data_pipelines.landmark_files import LandmarkTrack, load_landmarks
from data_pipelines.video_decoding import BadVideoError, VideoProbe, iterate_frames, probe_video

# The FaceMesh landmarker, under the name the rest of the code base knows it by.
MediaPipeFaceMesh = FaceMeshLandmarker
MISSING_MEDIAPIPE = f"landmarks: the FaceMesh model files are not installed; {INSTALL_HINT}"


class ExistingLandmarks:
    """Landmarks read from `<video>.npz` beside the video; NaN rows mean no face that frame."""

    def __init__(self):
        self.layout = None
        self._track = None

    def start(self, probe: VideoProbe) -> None:
        path = os.path.splitext(probe.path)[0] + ".npz"
        if not os.path.exists(path):
            raise BadVideoError(probe.path, "no_landmarks", f"expected {path}")
        track = load_landmarks(path)
        if track.landmarks_TLC.shape[0] != probe.num_frames:
            raise ValueError(
                f"{path}: expected landmarks for the {probe.num_frames} frames of {probe.path}, "
                f"got {track.landmarks_TLC.shape[0]}"
            )
        self.layout, self._track = track.layout, track.landmarks_TLC

    def __call__(self, t: int, frame_HWC: np.ndarray) -> np.ndarray | None:
        points = self._track[t]
        return None if np.isnan(points).any() else points


@dataclasses.dataclass(frozen=True)
class CropSettings:
    size: int = 256  # output side in pixels
    margin: float = 0.4  # fraction of the landmark box added around it (forehead, chin, hair)
    smooth_frames: int = 9  # moving-average window of the crop box; 1 = no smoothing
    min_frames: int = 8  # shortest track kept (a clip needs K frames)
    max_gap: int = 4  # frames without a face bridged inside one track
    # Output frame rate: 0 keeps a constant-rate video's own frames and re-times a variable-rate
    # one to its average rate; > 0 resamples every video to this rate. Either way, output frame
    # k shows the source frame on screen at time k / fps (its real timestamp).
    resample_fps: float = 0.0


def output_timeline(probe: VideoProbe, resample_fps: float) -> tuple[np.ndarray, float]:
    """`(source frame index of each output frame, output fps)`, from the real timestamps."""
    if resample_fps <= 0 and not probe.variable_frame_rate:
        return np.arange(probe.num_frames), probe.fps
    fps = resample_fps if resample_fps > 0 else probe.fps
    times_s_T = probe.times_s_T
    # Half a source tick of slack: a frame stamped exactly at k / fps is the one shown then.
    out_times_K = np.arange(int(np.floor(times_s_T[-1] * fps + 1e-6)) + 1) / fps
    pick_K = np.searchsorted(times_s_T, out_times_K + 0.5 * probe.time_base, side="right") - 1
    return np.clip(pick_K, 0, probe.num_frames - 1), float(fps)


def face_tracks(found_T: np.ndarray, min_frames: int, max_gap: int) -> list[tuple[int, int]]:
    """[start, stop) runs of found frames, bridging gaps of <= max_gap, at least min_frames."""
    tracks, start, last = [], None, None
    for t in np.flatnonzero(found_T):
        if start is not None and t - last - 1 > max_gap:
            tracks.append((start, last + 1))
            start = None
        if start is None:
            start = int(t)
        last = int(t)
    if start is not None:
        tracks.append((start, last + 1))
    return [(a, b) for a, b in tracks if b - a >= min_frames]


def interpolate_gaps(landmarks_TLC: np.ndarray, found_T: np.ndarray) -> np.ndarray:
    """Fills frames without a face by linear interpolation between the nearest found ones."""
    t_found = np.flatnonzero(found_T)
    out = landmarks_TLC.copy()
    flat = out.reshape(len(out), -1)
    for j in range(flat.shape[1]):
        flat[:, j] = np.interp(np.arange(len(out)), t_found, flat[t_found, j])
    return out


def smoothed_boxes(
    landmarks_TLC: np.ndarray, width: int, height: int, settings: CropSettings
) -> np.ndarray:
    """float [T, 3] (centre x, centre y, side) in pixels, averaged over time."""
    x_TL, y_TL = landmarks_TLC[..., 0] * width, landmarks_TLC[..., 1] * height
    x0, x1, y0, y1 = x_TL.min(1), x_TL.max(1), y_TL.min(1), y_TL.max(1)
    boxes_T3 = np.stack(
        [(x0 + x1) / 2, (y0 + y1) / 2, np.maximum(x1 - x0, y1 - y0) * (1 + settings.margin)], 1
    )
    window = max(1, min(settings.smooth_frames, len(boxes_T3)))
    if window > 1:
        # Edge-padded centred moving average: the same length out, no lag.
        padded = np.pad(boxes_T3, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
        kernel = np.ones(window) / window
        boxes_T3 = np.stack([np.convolve(padded[:, c], kernel, "valid") for c in range(3)], 1)
    return boxes_T3


def crop_frame(frame_HWC: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    cx, cy, side = box
    half = side / 2
    rect = (cx - half, cy - half, cx + half, cy + half)
    # PIL fills beyond the image with black, so a face near the border keeps its place.
    image = Image.fromarray(frame_HWC).transform(
        (size, size), Image.EXTENT, rect, resample=Image.BILINEAR
    )
    return np.asarray(image)


def crop_landmarks(landmarks_TLC: np.ndarray, boxes_T3, width: int, height: int) -> np.ndarray:
    out = np.array(landmarks_TLC, np.float32, copy=True)
    cx, cy, side = (boxes_T3[:, i, None] for i in range(3))
    out[..., 0] = (out[..., 0] * width - (cx - side / 2)) / side
    out[..., 1] = (out[..., 1] * height - (cy - side / 2)) / side
    out[..., 2] = out[..., 2] * width / side  # z is in units of the frame width
    return out


@dataclasses.dataclass
class PreparedClip:
    start: int  # first frame of the track on the output timeline (the source's, unless re-timed)
    frames_THWC: np.ndarray  # uint8, cropped and resized
    landmarks: LandmarkTrack  # in crop coordinates


def _with_progress(frames, total: int, path: str):
    from tqdm import tqdm

    return tqdm(frames, total=total, unit="frame", desc=f"landmarks {os.path.basename(path)}")


def prepare_video(
    path: str, landmarker, settings: CropSettings, *, progress: bool = False
) -> list[PreparedClip]:
    """The clips (one per face track) of one video; raises `BadVideoError` to skip it."""
    # Preparation reads what training cannot: variable frame rates (re-timed below) and
    # 10-bit video (decoded to 8-bit RGB, written as 8-bit H.264).
    probe = probe_video(
        path, min_frames=settings.min_frames, allow_vfr=True, allow_high_bit_depth=True
    )
    landmarker.start(probe)
    points, found = [], []
    frames = iterate_frames(probe)
    if progress:
        frames = _with_progress(frames, probe.num_frames, path)
    for t, frame_HWC in enumerate(frames):  # Pass 1: landmarks.
        p = landmarker(t, frame_HWC)
        found.append(p is not None)
        points.append(p)
    if not any(found):
        raise BadVideoError(path, "no_face", f"no face in any of {probe.num_frames} frames")
    # From here on, t indexes output frames; pick_T maps each to its source frame.
    pick_T, fps = output_timeline(probe, settings.resample_fps)
    num_out = len(pick_T)
    found_T = np.asarray(found, bool)[pick_T]
    num_points = next(p for p in points if p is not None).shape[0]
    landmarks_TLC = np.stack(
        [points[i] if points[i] is not None else np.zeros((num_points, 3)) for i in pick_T]
    )
    tracks = face_tracks(found_T, settings.min_frames, settings.max_gap)
    if not tracks:
        raise BadVideoError(
            path,
            "no_face",
            f"no face track of {settings.min_frames}+ frames ({found_T.sum()} frames with a face)",
        )
    landmarks_TLC = interpolate_gaps(landmarks_TLC.astype(np.float32), found_T)
    boxes_T3 = np.zeros((num_out, 3))
    for a, b in tracks:
        boxes_T3[a:b] = smoothed_boxes(landmarks_TLC[a:b], probe.width, probe.height, settings)
    crops = {a: [] for a, _ in tracks}
    owner_T = np.full(num_out, -1)
    for a, b in tracks:
        owner_T[a:b] = a
    t = 0  # pick_T is non-decreasing: a source frame serves the output frames t.. in turn
    for source, frame_HWC in enumerate(iterate_frames(probe)):  # Pass 2: crop, frame by frame.
        while t < num_out and pick_T[t] == source:
            if owner_T[t] >= 0:
                crops[owner_T[t]].append(crop_frame(frame_HWC, boxes_T3[t], settings.size))
            t += 1
    layout = landmarker.layout or "unknown"
    return [
        PreparedClip(
            start=a,
            frames_THWC=np.stack(crops[a]),
            landmarks=LandmarkTrack(
                crop_landmarks(landmarks_TLC[a:b], boxes_T3[a:b], probe.width, probe.height),
                fps,
                layout,
            ),
        )
        for a, b in tracks
    ]


def driving_landmarks(
    path: str, settings: CropSettings, landmarker=None, *, progress: bool = False
) -> LandmarkTrack:
    """The landmark sequence of a driving video: its longest face track, in crop coordinates."""
    clips = prepare_video(path, landmarker or FaceMeshLandmarker(), settings, progress=progress)
    return max(clips, key=lambda c: len(c.frames_THWC)).landmarks
