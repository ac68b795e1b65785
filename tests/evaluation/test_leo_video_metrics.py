"""LEO's rendered-video measures on videos whose answers are known by construction."""

import numpy as np
import pytest

from anchored_jax.evaluation.leo_video_metrics import (
    block_owner_T,
    edit_summary,
    sharpness_T,
    video_summary,
)

SIZE = 16


def _landmarks(num_frames: int) -> np.ndarray:
    """A fixed ring of 68 points around the frame centre."""
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    ring = 0.5 + 0.25 * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    return np.broadcast_to(ring, (num_frames, 68, 2)).copy()


def test_blocks_start_after_the_first_frame():
    np.testing.assert_array_equal(block_owner_T(8, 4), [-1, 0, 0, 0, 1, 1, 1, 2])
    with pytest.raises(ValueError, match="length: expected at least 2"):
        block_owner_T(8, 1)


def test_the_seam_ratio_sees_jumps_where_blocks_meet():
    # Brightness steps by 0.01 within blocks of 3 frames (1-3, 4-6, ...) and by 0.03 into
    # the first frame of each later block (frames 4, 7, 10).
    steps = [0.03 if t % 3 == 1 and t > 1 else 0.01 for t in range(1, 13)]
    levels = np.concatenate([[0.0], np.cumsum(steps)]) - 0.5
    video = np.broadcast_to(levels[:, None, None, None], (13, SIZE, SIZE, 3))
    summary = video_summary(video, _landmarks(13), length=4)
    assert summary["seam_ratio"] == pytest.approx(3.0)
    assert summary["drift_mean"] > 0  # the face region's colour moves away from frame 0's


def test_sharpness_falls_with_blur_and_drift_is_zero_for_a_still_video():
    rng = np.random.default_rng(0)
    frame = rng.uniform(-1, 1, (SIZE, SIZE, 3))
    blurred = (frame + np.roll(frame, 1, 0) + np.roll(frame, 1, 1) + np.roll(frame, 1, (0, 1))) / 4
    sharp = sharpness_T(np.stack([frame, blurred, frame]))
    assert sharp[0] == 1.0 and sharp[2] == 1.0 and sharp[1] < 0.7
    still = video_summary(np.stack([frame] * 5), _landmarks(5), length=3)
    assert still["drift_mean"] == 0.0 and still["sharpness_mean"] == 1.0
    assert still["seam_ratio"] is None  # no frame changes at all: undefined, not 0/0
    assert [len(c["mean"]) > 0 for c in still["curves"].values()] == [True, True]


def test_an_edit_that_moves_with_the_face_is_kept_and_one_that_fades_is_not():
    rng = np.random.default_rng(1)
    original = rng.uniform(-1, 1, (6, SIZE, SIZE, 3))
    kept = original.copy()
    for t in range(6):  # a dark patch that moves one pixel per frame
        kept[t, 4:8, 2 + t : 6 + t] = -1.0
    faded = original.copy()
    faded[0, 4:8, 2:6] = -1.0
    marks = _landmarks(6)
    summary = edit_summary(original, kept, marks, marks)
    assert summary["motion_px"] == 0.0
    assert summary["edit_kept"] == pytest.approx(1.0, abs=0.25)
    assert edit_summary(original, faded, marks, marks)["edit_kept"] == 0.0
    shifted = marks + 1.0 / SIZE  # one pixel right and down: sqrt(2) px
    assert edit_summary(original, kept, marks, shifted)["motion_px"] == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match=r"edited video: expected shape \(6, 16, 16, 3\)"):
        edit_summary(original, kept[:5], marks, marks)
