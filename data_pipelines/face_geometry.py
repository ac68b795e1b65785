"""Geometry of the synthetic faces: identity shape, per-frame pose, and the 68 landmarks.

A face lives in *canonical* units: its centre at the origin, half-height 1, u right, v down.
The head is a surface of revolution about the vertical axis: each horizontal slice is a circle
of radius R(v), so yawing the head leaves its outline unchanged and slides the features along
the slices. A pose then maps canonical points to the image by a similarity (scale, in-plane
roll, translation) into [0, 1] coordinates.

`posed_features` is the single place where expression and yaw move the features. The renderer
(`face_raster`) draws those posed shapes, and `face_landmarks` reads its points off the same
shapes, so landmarks sit exactly on the drawn features.
"""

import dataclasses
from typing import NamedTuple

import numpy as np

NUM_LANDMARKS = 68
LANDMARK_LAYOUT = "synthetic68"  # iBUG-68 order: jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, mouth 48-67; "left" and "right" are image sides.


@dataclasses.dataclass(frozen=True)
class FaceIdentity:
    """Who a face is: its shape (canonical units) and its colours (RGB, 0-255)."""

    identity_id: int
    half_width: float  # face half-width at the widest slice
    jaw_taper: float  # width factor at chin level; smaller = pointier jaw
    eye_height: float  # v of the eye centres (negative = above the face centre)
    eye_half_distance: float
    eye_half_width: float
    eye_half_height: float
    iris_radius: float
    brow_height: float  # distance from eye centre up to brow centre
    brow_half_length: float
    brow_thickness: float
    brow_arch: float  # how far the brow ends sit below its middle
    nose_length: float
    nose_width: float
    nose_protrusion: float  # depth of the nose tip in front of the face surface
    mouth_drop: float  # distance from the nostrils down to the mouth centre
    mouth_half_width: float
    lip_thickness: float
    mouth_max_open: float  # inner-lip half-height when the mouth is fully open
    hairline_top: float
    hairline_curve: float
    hair_bottom: float
    skin_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    lip_rgb: tuple[float, float, float]

    def outline_half_width(self, v: np.ndarray) -> np.ndarray:
        """A(v): the horizontal semi-axis of the face outline, narrowing towards the chin."""
        below = np.minimum(np.maximum(v, 0.0), 1.0)  # runs per pixel: no np.clip wrapper
        return self.half_width * (1.0 - (1.0 - self.jaw_taper) * below**2)


@dataclasses.dataclass(frozen=True, eq=False)
class FacePose:
    """Per-frame pose and expression; every field is a float array of shape [T]."""

    x: np.ndarray  # face centre, image fraction
    y: np.ndarray
    roll: np.ndarray  # in-plane rotation, radians
    scale: np.ndarray  # image fraction per canonical unit (face half-height)
    yaw: np.ndarray  # radians; positive turns the face towards image right
    eyes_closed: np.ndarray  # 0 open .. 1 shut
    mouth_open: np.ndarray  # 0 closed .. 1 fully open
    brow_raise: np.ndarray  # 0 rest .. 1 raised

    def __len__(self) -> int:
        return len(self.x)

    def take(self, frames: np.ndarray | slice) -> "FacePose":
        return FacePose(**{f.name: getattr(self, f.name)[frames] for f in dataclasses.fields(self)})


class PosedFeatures(NamedTuple):
    """Feature shapes after expression and yaw, in canonical units; leading axis is T."""

    eye_centre_TE2: np.ndarray  # E = 2 eyes, image-left first
    eye_half_width_TE: np.ndarray
    eye_open_half_height_T: np.ndarray
    brow_points_TBP2: np.ndarray  # B = 2 brows, P = 3 points left to right (capsule joints)
    nose_top_T2: np.ndarray
    nose_tip_T2: np.ndarray
    nostril_centre_T2: np.ndarray
    nostril_half_width_T: np.ndarray
    nostril_half_height: float
    mouth_centre_T2: np.ndarray
    lips_half_width_T: np.ndarray
    lips_half_height_T: np.ndarray
    opening_half_width_T: np.ndarray
    opening_half_height_T: np.ndarray


# Minimum half-heights: a shut eye or mouth is still a visible line, and ellipses stay finite.
_MIN_EYE_OPEN = 0.004
_MIN_MOUTH_OPEN = 0.012
_BROW_RAISE = 0.08  # canonical units at full raise


def _turn(identity: FaceIdentity, u, v, yaw, protrusion=0.0):
    """Yaws canonical surface points: returns (u', depth toward camera, local x-foreshortening)."""
    slice_radius = identity.outline_half_width(v) * np.sqrt(np.clip(1.0 - v**2, 0.0, 1.0))
    surface = np.sqrt(np.clip(slice_radius**2 - u**2, 1e-6, None))
    depth = surface + protrusion
    cos, sin = np.cos(yaw), np.sin(yaw)
    u_turned = u * cos + depth * sin
    depth_turned = -u * sin + depth * cos
    # d(u')/du on the surface: features on the far side shrink as they turn away.
    foreshortening = np.clip(cos - (u / surface) * sin, 0.3, 1.2)
    return u_turned, depth_turned, foreshortening


def _eye_nose_mouth_anchors(identity: FaceIdentity):
    ev = identity.eye_height
    nose_top_v = ev - 0.02
    nose_tip_v = ev + identity.nose_length
    nostril_v = nose_tip_v + 0.05
    mouth_v = nostril_v + identity.mouth_drop
    return ev, nose_top_v, nose_tip_v, nostril_v, mouth_v


def posed_features(identity: FaceIdentity, pose: FacePose) -> PosedFeatures:
    """Moves every feature by the pose's expression and yaw (shared by render and landmarks)."""
    yaw = pose.yaw
    ones = np.ones_like(yaw)
    ev, nose_top_v, nose_tip_v, nostril_v, mouth_v = _eye_nose_mouth_anchors(identity)

    eye_u = np.array([-identity.eye_half_distance, identity.eye_half_distance])
    eye_x, _, eye_k = _turn(identity, eye_u[None, :], ev, yaw[:, None])
    eye_centre = np.stack([eye_x, ev * np.ones_like(eye_x)], axis=-1)
    eye_open = identity.eye_half_height * (1.0 - np.clip(pose.eyes_closed, 0.0, 1.0))

    brow_v = ev - identity.brow_height - _BROW_RAISE * pose.brow_raise  # [T]
    bl, arch = identity.brow_half_length, identity.brow_arch
    brow_points = []
    for centre_u in eye_u:
        u = centre_u + np.array([-bl, 0.0, bl])
        v = brow_v[:, None] + np.array([arch, 0.0, arch])
        x, _, _ = _turn(identity, u[None, :], v, yaw[:, None])
        brow_points.append(np.stack([x, v], axis=-1))
    brow_points = np.stack(brow_points, axis=1)

    p = identity.nose_protrusion
    top_x, _, _ = _turn(identity, 0.0, nose_top_v, yaw, 0.15 * p)
    tip_x, _, _ = _turn(identity, 0.0, nose_tip_v, yaw, p)
    nostril_x, _, nostril_k = _turn(identity, 0.0, nostril_v, yaw, 0.5 * p)
    mouth_x, _, mouth_k = _turn(identity, 0.0, mouth_v, yaw)

    opening = np.maximum(identity.mouth_max_open * np.clip(pose.mouth_open, 0, 1), _MIN_MOUTH_OPEN)
    return PosedFeatures(
        eye_centre_TE2=eye_centre,
        eye_half_width_TE=identity.eye_half_width * eye_k,
        eye_open_half_height_T=np.maximum(eye_open, _MIN_EYE_OPEN),
        brow_points_TBP2=brow_points,
        nose_top_T2=np.stack([top_x, nose_top_v * ones], axis=-1),
        nose_tip_T2=np.stack([tip_x, nose_tip_v * ones], axis=-1),
        nostril_centre_T2=np.stack([nostril_x, nostril_v * ones], axis=-1),
        nostril_half_width_T=identity.nose_width * nostril_k,
        nostril_half_height=0.45 * identity.nose_width,
        mouth_centre_T2=np.stack([mouth_x, mouth_v * ones], axis=-1),
        lips_half_width_T=identity.mouth_half_width * mouth_k,
        lips_half_height_T=opening + identity.lip_thickness,
        opening_half_width_T=0.8 * identity.mouth_half_width * mouth_k,
        opening_half_height_T=opening,
    )


# Angles of the landmarks on each feature ellipse, in iBUG order (y down: 270 is the top):
# left corner, along the upper edge to the right corner, back along the lower edge.
_EYE_DEGREES = (180, 240, 300, 0, 60, 120)
_OUTER_LIP_DEGREES = (180, 210, 240, 270, 300, 330, 0, 30, 60, 90, 120, 150)
_INNER_LIP_DEGREES = (180, 225, 270, 315, 0, 45, 90, 135)
_NOSTRIL_DEGREES = (180, 135, 90, 45, 0)  # the lower edge of the nostril shadow, left to right


def _ellipse_landmarks(
    identity, pose, centre_T2, half_width_T, half_height_T, rest, degrees, protrusion=0.0
):
    """Points on a posed feature ellipse, [T, P, 2], and their depths, [T, P].

    `rest` is (centre u, half-width) of the same ellipse before the yaw: depth comes from where
    each point sits on the head, while its position is read off the drawn (posed) ellipse.
    """
    angle = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    cos, sin = np.cos(angle), np.sin(angle)
    half_height_T = np.broadcast_to(half_height_T, (len(pose),))[:, None]
    x = centre_T2[:, None, 0] + half_width_T[:, None] * cos
    y = centre_T2[:, None, 1] + half_height_T * sin
    rest_u, rest_half_width = rest
    _, depth, _ = _turn(identity, rest_u + rest_half_width * cos, y, pose.yaw[:, None], protrusion)
    return np.stack([x, y], axis=-1), depth


def face_landmarks(identity: FaceIdentity, pose: FacePose) -> np.ndarray:
    """The 68 iBUG-ordered landmarks, float32 [T, 68, 3]: x, y in [0, 1] of the image, z depth.

    z is a relative depth in the units of x (image widths), smaller = nearer the camera, as in
    MediaPipe; the head's vertical centre plane is z = 0.
    """
    f = posed_features(identity, pose)
    T, yaw = len(pose), pose.yaw[:, None]
    ev, nose_top_v, nose_tip_v, _, _ = _eye_nose_mouth_anchors(identity)
    eye_u = (-identity.eye_half_distance, identity.eye_half_distance)
    p = identity.nose_protrusion

    # Jaw 0-16: the outline from eye height on the image-left, round the chin, to the right.
    # The outline is yaw-invariant (a surface of revolution) and lies in the centre plane.
    start = np.arcsin(np.clip(ev, -0.9, 0.0))
    s = np.linspace(start, np.pi - start, 17)
    jaw_v = np.sin(s)
    jaw_u = -identity.outline_half_width(jaw_v) * np.cos(s)
    parts = [(np.broadcast_to(np.stack([jaw_u, jaw_v], -1), (T, 17, 2)), np.zeros((T, 17)))]

    # Brows 17-26: the three capsule joints and the midpoints of the two capsules.
    for b in range(2):
        joints = f.brow_points_TBP2[:, b]
        points = np.stack(
            [
                joints[:, 0],
                0.5 * (joints[:, 0] + joints[:, 1]),
                joints[:, 1],
                0.5 * (joints[:, 1] + joints[:, 2]),
                joints[:, 2],
            ],
            axis=1,
        )
        rest_u = eye_u[b] + identity.brow_half_length * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
        parts.append((points, _turn(identity, rest_u[None], points[..., 1], yaw)[1]))

    # Nose 27-30 along the bridge capsule, 31-35 on the nostril shadow.
    w = np.linspace(0.0, 1.0, 4)
    bridge = f.nose_top_T2[:, None] * (1 - w[:, None]) + f.nose_tip_T2[:, None] * w[:, None]
    bridge_v = np.linspace(nose_top_v, nose_tip_v, 4)[None]
    parts.append((bridge, _turn(identity, 0.0, bridge_v, yaw, p * (0.15 + 0.85 * w))[1]))
    parts.append(
        _ellipse_landmarks(
            identity,
            pose,
            f.nostril_centre_T2,
            f.nostril_half_width_T,
            f.nostril_half_height,
            (0.0, identity.nose_width),
            _NOSTRIL_DEGREES,
            0.5 * p,
        )
    )

    # Eyes 36-47, image-left eye first; the lids close onto the centre line on a blink.
    for e in range(2):
        parts.append(
            _ellipse_landmarks(
                identity,
                pose,
                f.eye_centre_TE2[:, e],
                f.eye_half_width_TE[:, e],
                f.eye_open_half_height_T,
                (eye_u[e], identity.eye_half_width),
                _EYE_DEGREES,
            )
        )

    # Mouth 48-59 on the outer lip edge, 60-67 on the opening.
    parts.append(
        _ellipse_landmarks(
            identity,
            pose,
            f.mouth_centre_T2,
            f.lips_half_width_T,
            f.lips_half_height_T,
            (0.0, identity.mouth_half_width),
            _OUTER_LIP_DEGREES,
        )
    )
    parts.append(
        _ellipse_landmarks(
            identity,
            pose,
            f.mouth_centre_T2,
            f.opening_half_width_T,
            f.opening_half_height_T,
            (0.0, 0.8 * identity.mouth_half_width),
            _INNER_LIP_DEGREES,
        )
    )

    points_TL2 = np.concatenate([points for points, _ in parts], axis=1)
    depth_TL = np.concatenate([depth for _, depth in parts], axis=1)
    assert points_TL2.shape == (T, NUM_LANDMARKS, 2), points_TL2.shape

    cos, sin = np.cos(pose.roll)[:, None], np.sin(pose.roll)[:, None]
    scale = pose.scale[:, None]
    u, v = points_TL2[..., 0], points_TL2[..., 1]
    x = pose.x[:, None] + scale * (cos * u - sin * v)
    y = pose.y[:, None] + scale * (sin * u + cos * v)
    return np.stack([x, y, -scale * depth_TL], axis=-1).astype(np.float32)
