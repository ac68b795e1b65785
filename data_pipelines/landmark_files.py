"""The on-disk landmark format shared by every video source.

One `.npz` per video, next to its frames, with three keys:

- `landmarks`: float32 `[T, L, 3]`, x and y normalised to [0, 1] of the image width and
  height (x right, y down), z a relative depth in the same units as x (smaller = nearer the
  camera, as MediaPipe reports it);
- `fps`: the video's frame rate, a float scalar;
- `layout`: which point set and order, e.g. `"synthetic68"` (iBUG-68 order) or
  `"mediapipe468"` (FaceMesh).

Synthetic exports and real MediaPipe extractions both write this, so readers need one path.
"""

import dataclasses
import os
import tempfile

import numpy as np

# Point counts of the layouts we know; files of other layouts load without a count check.
LAYOUT_POINTS = {"synthetic68": 68, "mediapipe468": 468}
_KEYS = ("landmarks", "fps", "layout")


@dataclasses.dataclass(frozen=True, eq=False)
class LandmarkTrack:
    """One video's landmarks: `landmarks_TLC` float32 [T, L, 3], frame rate and layout name."""

    landmarks_TLC: np.ndarray
    fps: float
    layout: str


def _check_track(where: str, landmarks_TLC: np.ndarray, fps: float, layout: str) -> None:
    if landmarks_TLC.ndim != 3:
        raise ValueError(
            f"{where}: expected landmarks of rank 3 [T, L, 3], got shape {landmarks_TLC.shape}"
        )
    if landmarks_TLC.shape[-1] != 3:
        raise ValueError(
            f"{where}: expected landmarks with last dim 3 (x, y, z), got shape "
            f"{landmarks_TLC.shape}"
        )
    if not np.issubdtype(landmarks_TLC.dtype, np.floating):
        raise ValueError(f"{where}: expected float landmarks, got dtype {landmarks_TLC.dtype}")
    expected_points = LAYOUT_POINTS.get(layout)
    if expected_points is not None and landmarks_TLC.shape[1] != expected_points:
        raise ValueError(
            f"{where}: layout {layout!r} expects {expected_points} points, got shape "
            f"{landmarks_TLC.shape}"
        )
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"{where}: expected fps > 0, got {fps}")


def current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def save_landmarks(
    path: str | os.PathLike, landmarks_TLC: np.ndarray, fps: float, layout: str
) -> None:
    """Writes one landmark file atomically: readers never see a half-written file."""
    path = os.fspath(path)
    landmarks_TLC = np.asarray(landmarks_TLC)
    _check_track(path, landmarks_TLC, float(fps), layout)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".landmarks-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # A file object, not a name: np.savez would otherwise append ".npz" to the temp name.
            np.savez(
                f,
                landmarks=landmarks_TLC.astype(np.float32),
                fps=np.float64(fps),
                layout=np.str_(layout),
            )
        # mkstemp makes 0600 files; a dataset is shared, so give it the usual umask mode.
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_landmarks(path: str | os.PathLike) -> LandmarkTrack:
    """Reads and checks one landmark file; a malformed file raises a one-line ValueError."""
    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:  # Missing, truncated, not numpy, a pickle.
        raise ValueError(f"{path}: expected a landmark .npz file, could not read it ({e})") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected a landmark .npz archive, got a single .npy array")
    with loaded as npz:
        missing = [k for k in _KEYS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{path}: expected keys {list(_KEYS)}, missing {missing} "
                f"(found {sorted(npz.files)})"
            )
        try:
            landmarks_TLC, fps_array, layout_array = (npz[k] for k in _KEYS)
        except (OSError, EOFError, ValueError) as e:  # Truncated, or object arrays (pickles).
            raise ValueError(
                f"{path}: expected a landmark .npz file, could not read it ({e})"
            ) from e
    if fps_array.shape != () or not np.issubdtype(fps_array.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric scalar 'fps', got {fps_array!r}")
    if layout_array.shape != () or layout_array.dtype.kind != "U":
        raise ValueError(f"{path}: expected a string scalar 'layout', got {layout_array!r}")
    fps, layout = float(fps_array), str(layout_array)
    _check_track(path, landmarks_TLC, fps, layout)
    return LandmarkTrack(landmarks_TLC=landmarks_TLC.astype(np.float32), fps=fps, layout=layout)
