"""The synthetic faces: determinism, distinct identities, exact landmarks, splits and export."""

import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import synthetic_faces as sf
from data_pipelines.face_geometry import face_landmarks
from data_pipelines.face_raster import render_faces
from data_pipelines.landmark_files import load_landmarks

FPS = 25.0
# A high-contrast palette: geometry checks then read shapes off colours without ambiguity.
SKIN, HAIR, IRIS, LIPS = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255)
MOUTH_INSIDE = np.array([75, 22, 30])  # face_raster's mouth interior


def _video(identity_id=3, video_index=0, seed=0):
    return sf.SyntheticVideo(seed=seed, identity_id=identity_id, video_index=video_index, fps=FPS)


def test_same_seed_same_pixels_and_landmarks_and_any_frame_renders_directly():
    frames = _video().frames(np.arange(12), 32)
    assert frames.dtype == np.uint8 and frames.shape == (12, 32, 32, 3)
    sf.make_identity.cache_clear()
    sf.make_motion.cache_clear()
    np.testing.assert_array_equal(_video().frames(np.arange(12), 32), frames)
    np.testing.assert_array_equal(
        _video().landmarks(np.arange(12)), _video().landmarks(np.arange(12))
    )
    # Closed-form motion: frames 9 and 4 alone equal the same frames of the full render.
    alone = _video().frames(np.array([9, 4]), 32).astype(int)
    assert np.abs(alone - frames[[9, 4]].astype(int)).max() <= 1
    # The face moves: consecutive frames differ, and more over longer gaps.
    assert np.abs(np.diff(frames.astype(float), axis=0)).mean() > 0.1
    assert not np.array_equal(_video(seed=1).frames(np.arange(2), 32), frames[:2])


def test_identities_look_clearly_different():
    firsts = np.stack([_video(identity_id=i).frames(np.array([0]), 32)[0] for i in range(6)])
    diffs = [
        np.abs(firsts[i].astype(float) - firsts[j]).mean()
        for i in range(6)
        for j in range(i + 1, 6)
    ]
    assert min(diffs) > 10, diffs
    shapes = np.array(
        [[f for f in dataclasses.astuple(sf.make_identity(0, i))[1:22]] for i in range(6)]
    )
    relative_spread = shapes.std(0) / np.abs(shapes.mean(0)).clip(1e-3)
    assert np.all(relative_spread > 0.02)  # every shape parameter varies across identities
    skins = np.array([sf.make_identity(0, i).skin_rgb for i in range(20)])
    assert skins.std(0).min() > 15  # light to dark skin


@pytest.mark.parametrize("size", [32, 48, 256])
def test_any_square_size_renders(size):
    frames = _video().frames(np.array([0, 30]), size)
    assert frames.shape == (2, size, size, 3)
    assert frames.std() > 20  # a face on a background, not a flat image


def _palette_render(identity_id, size, num_frames=40):
    identity = dataclasses.replace(
        sf.make_identity(0, identity_id),
        skin_rgb=SKIN,
        hair_rgb=HAIR,
        iris_rgb=IRIS,
        lip_rgb=LIPS,
    )
    motion = sf.make_motion(0, identity_id, 0)
    pose = sf.face_pose(motion, np.arange(num_frames) / FPS)
    black = np.zeros(3, np.float32)
    frames = render_faces(identity, pose, (black, black, 0.0), size).astype(float)
    return frames, face_landmarks(identity, pose), pose


def _pixel(frame, xy):
    size = frame.shape[0]
    col, row = np.clip((np.asarray(xy) * size).astype(int), 0, size - 1)
    return frame[row, col]


def _distance(rgb, target):
    return float(np.linalg.norm(np.asarray(rgb, float) - np.asarray(target, float)))


@pytest.mark.parametrize("identity_id", [0, 1, 2, 5])
def test_landmarks_land_on_the_drawn_features(identity_id):
    size = 96
    frames, landmarks, pose = _palette_render(identity_id, size)
    assert landmarks.shape == (40, 68, 3) and landmarks.dtype == np.float32
    step = 2.0 / size
    checked_open_eyes = checked_open_mouths = 0
    for frame, lm, closed, mouth in zip(
        frames, landmarks, pose.eyes_closed, pose.mouth_open, strict=True
    ):
        xy = lm[:, :2]
        # Jaw (0-16): skin just inside the outline, something else just outside it.
        nose_tip = xy[30]
        for j in range(17):
            tangent = xy[min(j + 1, 16)] - xy[max(j - 1, 0)]
            normal = np.array([tangent[1], -tangent[0]]) / np.linalg.norm(tangent)
            if np.dot(normal, xy[j] - nose_tip) < 0:
                normal = -normal
            assert _distance(_pixel(frame, xy[j] - step * normal), SKIN) < 10, (j, "inside")
            assert _distance(_pixel(frame, xy[j] + step * normal), SKIN) > 40, (j, "outside")
        # Brows (17-26) lie on the brow strokes (brow colour = 0.6 * hair).
        for j in range(17, 27):
            assert _distance(_pixel(frame, xy[j]), SKIN) > 150, j
        # Eyes (36-47): the centre of each contour is eye, not skin, while the eye is open.
        for eye in (xy[36:42], xy[42:48]):
            if closed < 0.2:
                assert _distance(_pixel(frame, eye.mean(0)), SKIN) > 150
                checked_open_eyes += 1
            if closed == 1.0:  # shut: the lids meet
                assert np.abs(eye[1:3, 1] - eye[[5, 4], 1]).max() < 0.01
        # Mouth (48-67): inside the outer contour is lips or mouth; the opening is dark.
        for j in range(48, 60):
            assert _distance(_pixel(frame, 0.6 * xy[j] + 0.4 * xy[60:68].mean(0)), SKIN) > 100
        if mouth > 0.7:
            assert _distance(_pixel(frame, xy[60:68].mean(0)), MOUTH_INSIDE) < 40
            checked_open_mouths += 1
    assert checked_open_eyes > 20 and checked_open_mouths > 0


def test_landmark_depth_follows_yaw():
    _, landmarks, pose = _palette_render(4, 32, num_frames=60)
    z = landmarks[..., 2]
    assert np.all(z[:, 30] < z[:, 27])  # the nose tip is nearer the camera than its bridge
    assert np.all(z[:, 0:17] == 0)  # the outline is the head's centre plane
    # Turning right brings the image-left eye nearer: its depth difference tracks the yaw.
    left_minus_right = z[:, 36:42].mean(1) - z[:, 42:48].mean(1)
    assert np.corrcoef(left_minus_right, pose.yaw)[0, 1] < -0.95
    assert np.ptp(pose.yaw) > 0.05


def test_blinks_and_mouth_move_over_time():
    pose = sf.face_pose(sf.make_motion(0, 2, 1), np.arange(500) / FPS)  # 20 seconds
    shut = pose.eyes_closed > 0.9
    blinks = np.sum(shut[1:] & ~shut[:-1])
    assert 3 <= blinks <= 16
    assert shut.mean() < 0.15  # short events
    assert pose.mouth_open.min() == 0.0 and pose.mouth_open.max() > 0.9


def test_train_and_test_identities_are_disjoint():
    train = sf.identity_ids("train", 500)
    test = sf.identity_ids("test", 50)
    assert not set(train.tolist()) & set(test.tolist())
    assert test.min() >= sf.TEST_IDENTITY_OFFSET > train.max()
    shape = lambda i: np.array(dataclasses.astuple(sf.make_identity(0, int(i)))[1:22])  # noqa: E731
    train_shapes = np.stack([shape(i) for i in train[:100]])
    for i in test[:10]:
        assert np.abs(train_shapes - shape(i)).sum(1).min() > 1e-3
    with pytest.raises(ValueError, match="split"):
        sf.identity_ids("val", 3)


def test_export_writes_the_frame_folder_layout(tmp_path):
    written = sf.export_dataset(
        tmp_path,
        split="test",
        num_identities=1,
        videos_per_identity=2,
        num_frames=3,
        image_size=32,
        fps=FPS,
        seed=0,
    )
    assert [os.path.basename(d) for d in written] == ["00000", "00001"]
    assert sorted(os.listdir(written[1])) == [
        "00000.png",
        "00001.png",
        "00002.png",
        "landmarks.npz",
    ]
    video = sf.SyntheticVideo(seed=0, identity_id=sf.TEST_IDENTITY_OFFSET, video_index=1, fps=FPS)
    png = np.asarray(Image.open(os.path.join(written[1], "00002.png")))
    np.testing.assert_array_equal(png, video.frames(np.array([2]), 32)[0])
    track = load_landmarks(os.path.join(written[1], "landmarks.npz"))
    np.testing.assert_array_equal(track.landmarks_TLC, video.landmarks(np.arange(3)))
    assert track.fps == FPS and track.layout == "synthetic68"
    index = json.loads((tmp_path / "test" / "videos.json").read_text())
    assert index["00001"] == {"identity_id": sf.TEST_IDENTITY_OFFSET, "video_index": 1}


def test_cli_exports_both_splits(tmp_path, capsys):
    sf.main(
        [
            "--out",
            str(tmp_path),
            "--size",
            "32",
            "--frames",
            "2",
            "--identities",
            "2",
            "--videos_per_identity",
            "1",
        ]
    )
    assert sorted(os.listdir(tmp_path / "train")) == ["00000", "00001", "videos.json"]
    assert sorted(os.listdir(tmp_path / "test")) == ["00000", "videos.json"]
    assert "train: 2 videos" in capsys.readouterr().out
