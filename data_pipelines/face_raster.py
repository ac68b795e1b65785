"""Soft rasterisation of the synthetic faces: posed feature shapes to uint8 frames.

Every shape is an approximate signed distance in canonical face units; a pixel's coverage is
that distance over one pixel's width, clipped to [0, 1], which anti-aliases every edge with a
one-pixel ramp. Frames are rendered in chunks, vectorised over [frames, H, W], and each small
feature (eye, brow, nose, mouth) is computed only inside its own pixel window, so a frame costs
a few hundred numpy operations, most of them on small arrays.
"""

import functools

import numpy as np

from data_pipelines.face_geometry import FaceIdentity, FacePose, PosedFeatures, posed_features

_ELEMENTS_PER_CHUNK = 1 << 17  # frames * pixels per vectorised chunk; bounds peak memory
_LASH_RGB = np.array([45.0, 30.0, 30.0], np.float32)
_SCLERA_RGB = np.array([240.0, 238.0, 232.0], np.float32)
_PUPIL_RGB = np.array([15.0, 12.0, 12.0], np.float32)
_MOUTH_RGB = np.array([75.0, 22.0, 30.0], np.float32)
_LASH_WIDTH = 0.03  # canonical units: the dark rim that is all that shows of a shut eye


@functools.lru_cache(maxsize=8)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1] image fractions: (x_HW, y_HW)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(c[:, None], (size, size))


def _unit_clip(x):
    # np.minimum/maximum: np.clip's Python wrapper costs more than the work on small arrays.
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _ellipse(u, v, cu, cv, au, av):
    """Approximate signed distance to an axis-aligned ellipse: (r - 1) / |grad r|."""
    du, dv = (u - cu) / au, (v - cv) / av
    r = np.sqrt(du * du + dv * dv)
    grad = np.sqrt((du / au) ** 2 + (dv / av) ** 2)
    # (r + eps) keeps the exact centre inside (0/0 would read as "on the edge").
    return (r - 1.0) * (r + 1e-6) / (grad + 1e-6)


def _capsule(u, v, p0, p1, radius):
    """Exact signed distance to a segment p0-p1 thickened by `radius`."""
    du, dv = u - p0[0], v - p0[1]
    eu, ev = p1[0] - p0[0], p1[1] - p0[1]
    h = _unit_clip((du * eu + dv * ev) / (eu * eu + ev * ev + 1e-9))
    return np.sqrt((du - h * eu) ** 2 + (dv - h * ev) ** 2) - radius


def _expand(a):
    """[T] or [T, 2] per-frame parameters broadcast against [T, H, W] pixel arrays."""
    a = np.asarray(a, np.float32)
    return a.reshape(a.shape[:1] + (1, 1) + a.shape[1:])


class _Canvas:
    """A chunk of frames being painted, with every pixel's canonical face coordinates."""

    def __init__(self, pose: FacePose, background, size: int):
        x_HW, y_HW = _pixel_centres(size)
        self.pose, self.size = pose, size
        # Pixels into canonical face units: the inverse of the landmarks' similarity transform.
        cos, sin = _expand(np.cos(pose.roll)), _expand(np.sin(pose.roll))
        scale = _expand(pose.scale)
        dx, dy = x_HW[None] - _expand(pose.x), y_HW[None] - _expand(pose.y)
        self.u = (cos * dx + sin * dy) / scale
        self.v = (-sin * dx + cos * dy) / scale
        self.per_pixel = size * scale  # pixels per canonical unit, [T, 1, 1]
        colour0, colour1, angle = background
        ramp = np.clip(0.5 + (x_HW - 0.5) * np.cos(angle) + (y_HW - 0.5) * np.sin(angle), 0, 1)
        self.image = np.broadcast_to(
            colour0 + ramp[..., None] * (colour1 - colour0), (len(pose), size, size, 3)
        ).astype(np.float32)

    def window(self, centre_T2=None, radius=None):
        """Pixel window holding a canonical disc in every frame; features paint only there."""
        full = (slice(None), slice(None), slice(None))
        if centre_T2 is None:
            return full
        p = self.pose
        cu, cv = centre_T2[:, 0], centre_T2[:, 1]
        cos, sin = np.cos(p.roll), np.sin(p.roll)
        x = p.x + p.scale * (cos * cu - sin * cv)
        y = p.y + p.scale * (sin * cu + cos * cv)
        r = p.scale * np.asarray(radius)
        lo = np.floor(np.array([(x - r).min(), (y - r).min()]) * self.size) - 1
        hi = np.ceil(np.array([(x + r).max(), (y + r).max()]) * self.size) + 2
        lo, hi = np.clip(lo, 0, self.size).astype(int), np.clip(hi, 0, self.size).astype(int)
        return (slice(None), slice(lo[1], hi[1]), slice(lo[0], hi[0]))

    def coords(self, window):
        return self.u[window], self.v[window]

    def paint(self, window, distance, rgb, within=None):
        """Paints `rgb` over the window by the coverage of `distance` (times `within`)."""
        alpha = _unit_clip(0.5 - distance * self.per_pixel)
        if within is not None:
            alpha = alpha * within
        image = self.image[window]
        image += alpha[..., None] * (rgb - image)
        return alpha


def _render_chunk(identity: FaceIdentity, pose: FacePose, f: PosedFeatures, background, size):
    canvas = _Canvas(pose, background, size)
    skin = np.asarray(identity.skin_rgb, np.float32)
    hair = np.asarray(identity.hair_rgb, np.float32)
    a = identity.half_width

    full = canvas.window()
    u, v = canvas.coords(full)
    hair_back = _ellipse(u, v, 0.0, -0.05, 1.12 * a, 1.1)
    canvas.paint(full, np.maximum(hair_back, v - identity.hair_bottom), hair)
    canvas.paint(full, _capsule(u, v, (0.0, 0.6), (0.0, 3.0), 0.45 * a), 0.78 * skin)
    # Face outline: (u / A(v))^2 + v^2 = 1, the same curve the jaw landmarks are read from.
    canvas.paint(full, _ellipse(u, v, 0.0, 0.0, identity.outline_half_width(v), 1.0), skin)
    # The fringe fills a slightly larger outline, so no skin seam shows at the face edge; the
    # margin stays inside the back hair, which is wider still.
    fringe = _unit_clip(0.5 - _ellipse(u, v, 0.0, 0.0, a + 0.03, 1.03) * canvas.per_pixel)
    hairline = identity.hairline_top + identity.hairline_curve * (u / a) ** 2
    canvas.paint(full, v - hairline, hair, within=fringe)

    brows = f.brow_points_TBP2
    for b in range(2):
        middle = brows[:, b, 1]
        reach = np.linalg.norm(brows[:, b] - middle[:, None], axis=-1).max(-1)
        window = canvas.window(middle, reach + identity.brow_thickness)
        u, v = canvas.coords(window)
        distance = np.inf
        for j in range(2):
            p0, p1 = _expand(brows[:, b, j]), _expand(brows[:, b, j + 1])
            segment = _capsule(
                u, v, (p0[..., 0], p0[..., 1]), (p1[..., 0], p1[..., 1]), identity.brow_thickness
            )
            distance = np.minimum(distance, segment)
        canvas.paint(window, distance, 0.6 * hair)

    iris = np.asarray(identity.iris_rgb, np.float32)
    open_h = f.eye_open_half_height_T
    for e in range(2):
        centre, half_w = f.eye_centre_TE2[:, e], f.eye_half_width_TE[:, e]
        window = canvas.window(centre, np.maximum(half_w, open_h) + _LASH_WIDTH)
        u, v = canvas.coords(window)
        cu, cv, hw, hh = (
            _expand(centre[:, 0]),
            _expand(centre[:, 1]),
            _expand(half_w),
            _expand(open_h),
        )
        canvas.paint(window, _ellipse(u, v, cu, cv, hw + _LASH_WIDTH, hh + _LASH_WIDTH), _LASH_RGB)
        sclera = canvas.paint(window, _ellipse(u, v, cu, cv, hw, hh), _SCLERA_RGB)
        from_centre = np.sqrt((u - cu) ** 2 + (v - cv) ** 2)
        canvas.paint(window, from_centre - identity.iris_radius, iris, within=sclera)
        canvas.paint(window, from_centre - 0.45 * identity.iris_radius, _PUPIL_RGB, within=sclera)

    top, tip = f.nose_top_T2, f.nose_tip_T2
    nose_radius = 0.3 * identity.nose_width
    window = canvas.window(
        0.5 * (top + tip), 0.5 * np.linalg.norm(tip - top, axis=-1) + nose_radius
    )
    u, v = canvas.coords(window)
    top, tip = _expand(top), _expand(tip)
    bridge = _capsule(u, v, (top[..., 0], top[..., 1]), (tip[..., 0], tip[..., 1]), nose_radius)
    canvas.paint(window, bridge, 0.88 * skin)
    centre, half_w = f.nostril_centre_T2, f.nostril_half_width_T
    window = canvas.window(centre, np.maximum(half_w, f.nostril_half_height))
    u, v = canvas.coords(window)
    nostrils = _ellipse(
        u, v, _expand(centre[:, 0]), _expand(centre[:, 1]), _expand(half_w), f.nostril_half_height
    )
    canvas.paint(window, nostrils, 0.72 * skin)

    centre = f.mouth_centre_T2
    window = canvas.window(centre, np.maximum(f.lips_half_width_T, f.lips_half_height_T))
    u, v = canvas.coords(window)
    mu, mv = _expand(centre[:, 0]), _expand(centre[:, 1])
    lips = _ellipse(u, v, mu, mv, _expand(f.lips_half_width_T), _expand(f.lips_half_height_T))
    canvas.paint(window, lips, np.asarray(identity.lip_rgb, np.float32))
    opening = _ellipse(
        u, v, mu, mv, _expand(f.opening_half_width_T), _expand(f.opening_half_height_T)
    )
    canvas.paint(window, opening, _MOUTH_RGB)
    return np.clip(np.rint(canvas.image), 0, 255).astype(np.uint8)


def render_faces(
    identity: FaceIdentity,
    pose: FacePose,
    background: tuple[np.ndarray, np.ndarray, float],
    image_size: int,
) -> np.ndarray:
    """Renders one frame per pose entry: uint8 [T, image_size, image_size, 3].

    `background` is (colour0 RGB, colour1 RGB, gradient angle in radians); equal colours give
    a plain background.
    """
    features = posed_features(identity, pose)
    chunk = max(1, _ELEMENTS_PER_CHUNK // (image_size * image_size))
    frames = []
    for start in range(0, len(pose), chunk):
        sl = slice(start, start + chunk)
        chunk_features = PosedFeatures(
            *(x[sl] if isinstance(x, np.ndarray) else x for x in features)
        )
        frames.append(
            _render_chunk(identity, pose.take(sl), chunk_features, background, image_size)
        )
    if not frames:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.concatenate(frames, axis=0)
