"""A photo as a reenactment source: find the face, crop it as training crops were, resize.

Training clips are cropped by `face_preparation` from FaceMesh points: the square around the
points, enlarged by `margin`, axis-aligned (no rotation), resized to the model's side. A photo
goes through exactly that, with the same landmarker (`face_landmarker`), so the face sits where
the model saw faces during training.
"""

import dataclasses

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data_pipelines.face_landmarker import FaceMeshLandmarker, image_landmarks
from data_pipelines.face_preparation import CropSettings, crop_frame, crop_landmarks, smoothed_boxes


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    image_HWC: np.ndarray  # uint8 [size, size, 3]
    box: tuple[float, float, float]  # (centre x, centre y, side) in pixels of the photo
    landmarks_LC: np.ndarray  # float32 [468, 3], normalised to the crop


def read_photo(path: str) -> np.ndarray:
    """uint8 [H, W, 3] of an image file, upright (EXIF orientation applied); one-line errors."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        reason = f"expected an image file (png, jpg, ...), could not read it ({e})"
        raise ValueError(f"{path}: {reason}") from None


def crop_at_points(
    image_HWC: np.ndarray, points_LC: np.ndarray, size: int, *, margin: float = CropSettings.margin
) -> FaceCrop:
    """The crop of one image around its FaceMesh points (normalised to the image)."""
    height, width = image_HWC.shape[:2]
    settings = CropSettings(size=size, margin=margin, smooth_frames=1)
    box_3 = smoothed_boxes(points_LC[None], width, height, settings)[0]
    return FaceCrop(
        image_HWC=crop_frame(image_HWC, box_3, size),
        box=tuple(float(v) for v in box_3),
        landmarks_LC=crop_landmarks(points_LC[None], box_3[None], width, height)[0],
    )


def crop_face(
    image_HWC: np.ndarray,
    size: int,
    *,
    margin: float = CropSettings.margin,
    landmarker: FaceMeshLandmarker | None = None,
    where: str = "image",
) -> FaceCrop:
    """The face of one image, cropped with `margin` and resized to `size`."""
    points_LC = image_landmarks(image_HWC, landmarker)
    if points_LC is None:
        raise ValueError(f"{where}: no face found (FaceMesh); use a photo with one visible face")
    return crop_at_points(image_HWC, points_LC, size, margin=margin)


def load_source_image(
    path: str, size: int, *, margin: float = CropSettings.margin, landmarker=None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """`(image_HWC uint8 [size, size, 3], crop box (cx, cy, side) in photo pixels)`."""
    crop = crop_face(read_photo(path), size, margin=margin, landmarker=landmarker, where=path)
    return crop.image_HWC, crop.box
