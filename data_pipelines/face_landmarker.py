"""FaceMesh landmarks (468 points) in this environment: MediaPipe's models run with TF Lite.

Two networks, the files that the MediaPipe wheel bundles (`face_models` installs them):

1. **BlazeFace** finds the face: an SSD over a letterboxed square of the frame, giving a box and
   six keypoints (eyes, nose, mouth, ears). The short-range model (128², faces near the camera)
   is tried first, then the full-range one (192², smaller faces).
2. **FaceMesh** reads 468 points (x, y, z) from a square region around the face, rotated so the
   eyes are level, plus a face-presence score.

In a video, as MediaPipe's own graph does, the next frame's region comes from this frame's
points (tracking); the detector runs again only when the presence score drops. The points are
returned in the landmark-file convention: x, y in [0, 1] of the frame, z in frame widths.

The constants follow MediaPipe 0.10.14's graphs (face_detection_*.pbtxt,
face_detection_front_detection_to_roi.pbtxt, face_landmarks_to_roi.pbtxt, face_landmark_cpu.pbtxt).
"""

import dataclasses
import math
import warnings

import numpy as np
from PIL import Image

from data_pipelines.face_models import model_path

LAYOUT = "mediapipe468"
NUM_POINTS = 468
_MESH_SIZE = 192  # FaceMesh's input side
_ROI_SCALE = 1.5  # region side = 1.5 x the face box's long side (both *_to_roi graphs)
_EYE_CORNERS = (33, 263)  # points that level the tracked region (face_landmarks_to_roi)
_PRESENCE = 0.5  # min_tracking_confidence of MediaPipe's FaceMesh


@dataclasses.dataclass(frozen=True)
class _Detector:
    file: str
    size: int  # input side
    layers: tuple[tuple[int, int], ...]  # (stride, anchors per cell) after merging equal strides
    min_score: float


# SsdAnchorsCalculator settings: short range has strides 8, 16, 16, 16 with two anchors per
# layer (so 2 and 6 per cell); full range one stride-4 layer with one anchor.
_SHORT = _Detector("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), 0.5)
_FULL = _Detector("face_detection_full_range_sparse.tflite", 192, ((4, 1),), 0.5)


def _anchors(detector: _Detector) -> np.ndarray:
    """[N, 2] anchor centres in [0, 1] (fixed anchor size 1, offset 0.5)."""
    centres = []
    for stride, per_cell in detector.layers:
        cells = math.ceil(detector.size / stride)
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def _interpreter(path: str):
    try:  # the standalone LiteRT package, where installed
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, x_HWC: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x_HWC[None])
    interpreter.invoke()
    # Largest output first (boxes before scores, points before presence): the files' tensor
    # indices do not follow the graphs' output order.
    outputs = sorted(interpreter.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
    return [interpreter.get_tensor(d["index"])[0] for d in outputs]


@dataclasses.dataclass(frozen=True)
class Region:
    """A rotated square of the frame: centre and side in pixels, angle in radians (y down)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def to_frame(self, uv_N2: np.ndarray, out_size: int) -> np.ndarray:
        """Pixel coordinates in a `out_size`² crop of this region -> frame pixels."""
        s = self.side / out_size
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u, v = uv_N2[:, 0] - out_size / 2, uv_N2[:, 1] - out_size / 2
        return np.stack([self.cx + s * (cos * u - sin * v), self.cy + s * (sin * u + cos * v)], 1)

    def crop(self, frame_HWC: np.ndarray, out_size: int) -> np.ndarray:
        """float32 [out, out, 3] of the region (black outside the frame), values 0..255."""
        s = self.side / out_size
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        o = out_size / 2
        affine = (
            s * cos,
            -s * sin,
            self.cx - s * o * (cos - sin),
            s * sin,
            s * cos,
            self.cy - s * o * (sin + cos),
        )
        image = Image.fromarray(frame_HWC).transform(
            (out_size, out_size), Image.AFFINE, affine, resample=Image.BILINEAR
        )
        return np.asarray(image, np.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100.0, 100.0)))


class FaceDetector:
    """BlazeFace: the most confident face of a frame as a FaceMesh region, or None."""

    def __init__(self):
        self._models = [(d, _interpreter(model_path(d.file)), _anchors(d)) for d in (_SHORT, _FULL)]

    def __call__(self, frame_HWC: np.ndarray) -> Region | None:
        height, width = frame_HWC.shape[:2]
        letterbox = Region(width / 2, height / 2, max(width, height))
        for detector, interpreter, anchors_N2 in self._models:
            side = detector.size
            x = letterbox.crop(frame_HWC, detector.size) / 127.5 - 1.0  # range [-1, 1]
            boxes_N16, scores_N1 = _run(interpreter, x)
            scores_N = _sigmoid(scores_N1[:, 0])
            best = int(np.argmax(scores_N))
            if scores_N[best] < detector.min_score:
                continue
            raw = boxes_N16 / detector.size
            centre_2 = raw[best, :2] + anchors_N2[best]
            wh_2 = raw[best, 2:4]
            eyes_22 = raw[best, 4:8].reshape(2, 2) + anchors_N2[best]
            # Detections overlapping the best one are averaged by score (MediaPipe's weighted
            # non-maximum suppression, for the one face kept).
            centres_N2 = raw[:, :2] + anchors_N2
            near = (scores_N >= detector.min_score) & (
                np.abs(centres_N2 - centre_2).max(1) < 0.5 * wh_2.max()
            )
            w_N = scores_N[near] / scores_N[near].sum()
            centre_2 = (w_N[:, None] * centres_N2[near]).sum(0)
            wh_2 = (w_N[:, None] * raw[near, 2:4]).sum(0)
            in_frame_32 = letterbox.to_frame(np.stack([centre_2, *eyes_22]) * side, side)
            (cx, cy), (ex0, ey0), (ex1, ey1) = in_frame_32
            long_side = max(wh_2) * letterbox.side
            return Region(cx, cy, long_side * _ROI_SCALE, math.atan2(ey1 - ey0, ex1 - ex0))
        return None


class FaceMeshLandmarker:
    """468 FaceMesh points per frame, tracking between frames; the `Landmarker` interface of
    `face_preparation` (`layout`, `start(probe)`, `__call__(t, frame) -> [468, 3] | None`)."""

    layout = LAYOUT

    def __init__(self, min_presence: float = _PRESENCE):
        self.min_presence = min_presence
        self._detector = FaceDetector()
        self._mesh = _interpreter(model_path("face_landmark.tflite"))
        self._region = None

    def start(self, probe=None) -> None:
        """A new video: tracking state must not leak from one video into the next."""
        self._region = None

    def _mesh_points(self, frame_HWC, region: Region):
        crop = region.crop(frame_HWC, _MESH_SIZE) / 255.0  # range [0, 1]
        points, presence = _run(self._mesh, crop.astype(np.float32))
        if _sigmoid(float(np.ravel(presence)[0])) < self.min_presence:
            return None
        points_N3 = points.reshape(NUM_POINTS, 3)
        xy_N2 = region.to_frame(points_N3[:, :2], _MESH_SIZE)
        z_N = points_N3[:, 2] * region.side / _MESH_SIZE
        return np.concatenate([xy_N2, z_N[:, None]], 1)  # frame pixels

    def points_in_pixels(self, frame_HWC: np.ndarray) -> np.ndarray | None:
        """[468, 3] in frame pixels (z in pixels too), or None when no face is found."""
        frame_HWC = np.ascontiguousarray(frame_HWC[..., :3], np.uint8)
        points = None
        if self._region is not None:
            points = self._mesh_points(frame_HWC, self._region)
        if points is None:
            region = self._detector(frame_HWC)
            points = None if region is None else self._mesh_points(frame_HWC, region)
        self._region = None if points is None else _region_of_points(points)
        return points

    def __call__(self, t: int, frame_HWC: np.ndarray) -> np.ndarray | None:
        points = self.points_in_pixels(frame_HWC)
        if points is None:
            return None
        height, width = frame_HWC.shape[:2]
        return (points / np.array([width, height, width], np.float32)).astype(np.float32)


def _region_of_points(points_N3: np.ndarray) -> Region:
    """The next frame's region: the points' box in the eye-levelled frame, enlarged 1.5x."""
    a, b = points_N3[_EYE_CORNERS[0], :2], points_N3[_EYE_CORNERS[1], :2]
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    cos, sin = math.cos(angle), math.sin(angle)
    xy = points_N3[:, :2]
    u, v = xy @ np.array([cos, sin]), xy @ np.array([-sin, cos])  # coordinates along the axes
    cu, cv = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    side = max(u.max() - u.min(), v.max() - v.min()) * _ROI_SCALE
    return Region(cu * cos - cv * sin, cu * sin + cv * cos, side, angle)


def image_landmarks(image_HWC: np.ndarray, landmarker: FaceMeshLandmarker | None = None):
    """[468, 3] normalised points of one photo (no tracking), or None without a face."""
    landmarker = landmarker or FaceMeshLandmarker()
    landmarker.start()
    return landmarker(0, image_HWC)
