"""The grain pipeline on real files: frame and video folders, exact frames, resume, training."""

import collections
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from data_pipelines.frame_folders import FrameFolderSource
from data_pipelines.landmark_files import save_landmarks
from data_pipelines.pipeline import BATCH_KEYS, build_clip_dataset, make_source


def _data_config(source, root, **overrides):
    config = ml_collections.ConfigDict(
        dict(
            source=source,
            root=root,
            verify_files=True,
            image_size=32,
            clip_frames=3,
            fps=25.0,
            video_frames=16,
            num_train_identities=1,
            num_test_identities=1,
            videos_per_identity=1,
            sampler="random_subset",
            min_window=3,
            max_window=12,
            identity_frame="random",
            seed=0,
            worker_count=0,
        )
    )
    config.update(overrides)
    return config


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _check_batch(batch, source, fx):
    """Each clip shows exactly the frames its indices name, at the file's own times."""
    idx_BK = batch["frame_indices_BK"]
    np.testing.assert_array_equal(fx.read_codes(batch["video_BKHWC"]), idx_BK)
    np.testing.assert_allclose(batch["times_BK"], (idx_BK - idx_BK[:, :1]) / fx.fps, atol=1e-6)
    for b, video_id in enumerate(batch["video_id_B"]):
        record = source[int(video_id)]
        np.testing.assert_array_equal(batch["landmarks_BKLC"][b], record.landmarks_TLC[idx_BK[b]])
        assert batch["identity_id_B"][b] == record.identity_id
        assert 0 <= fx.read_codes(batch["identity_BHWC"][b][None])[0] < record.num_frames


def test_video_dir_batches_are_exact_deterministic_and_resume(face_videos):
    fx = face_videos
    config = _data_config("video_dir", fx.root)
    source = make_source(config, "train")
    assert len(source) == len(fx.good_train)
    iterator = iter(build_clip_dataset(config, split="train", batch_size=4, seed=3))
    first = _take(iterator, 2)
    state = iterator.get_state()
    rest = _take(iterator, 2)
    for batch in first + rest:
        assert tuple(batch) == BATCH_KEYS
        _check_batch(batch, source, fx)
    again = iter(build_clip_dataset(config, split="train", batch_size=4, seed=3))
    for x, y in zip(first + rest, _take(again, 4), strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key])
    resumed = iter(build_clip_dataset(config, split="train", batch_size=4, seed=3))
    resumed.set_state(state)
    for x, y in zip(rest, _take(resumed, 2), strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key])
    # The test split is its own folder, with identities beyond any training id.
    (test_batch,) = _take(iter(build_clip_dataset(config, split="test", batch_size=2, seed=0)), 1)
    assert np.all(test_batch["identity_id_B"] >= 1_000_000)


def test_clips_of_a_corrupt_video_are_dropped_never_patched(face_videos):
    fx = face_videos
    config = _data_config("video_dir", fx.root, verify_files=False, max_window=fx.frames)
    source = make_source(config, "train")
    corrupt_id = source.names.index("bad/corrupt_mid.mp4")
    dataset = build_clip_dataset(
        config, split="train", batch_size=1, seed=0, num_epochs=8, shuffle=False
    )
    clips = list(dataset)
    seen = collections.Counter(int(b["video_id_B"][0]) for b in clips)
    # Every good video gives all 8 clips; the corrupt one only those away from its damage, and
    # each clip it could not give is taken by a whole clip of the next video in the stream, so
    # no process's rows shift (data_pipelines/global_batches.py).
    assert all(seen[v] >= 8 for v in range(len(source)) if v != corrupt_id)
    assert seen[corrupt_id] < 8 and sum(seen.values()) == 8 * len(source)
    for batch in clips:
        _check_batch(batch, source, fx)


def _write_folder(directory, frames_THWC, fps, *, ext=".png", mode=None, landmarks=True):
    os.makedirs(directory)
    for t, frame in enumerate(frames_THWC):
        image = Image.fromarray(frame)
        image = image.convert(mode) if mode else image
        image.save(os.path.join(directory, f"{t:05d}{ext}"))
    if landmarks:
        lm = np.random.default_rng(len(frames_THWC)).uniform(0, 1, (len(frames_THWC), 68, 3))
        save_landmarks(os.path.join(directory, "landmarks.npz"), lm, fps, "synthetic68")


@pytest.fixture(scope="module")
def frame_root(face_videos, tmp_path_factory):
    fx, root = face_videos, tmp_path_factory.mktemp("frames")
    frames = fx.coded_frames(20, 64, 64, seed=1)
    train, test = root / "train", root / "test"
    _write_folder(train / "a_png", frames, 25.0)
    _write_folder(train / "b_jpg", frames, 30.0, ext=".jpg")
    _write_folder(train / "c_gray_odd", fx.coded_frames(20, 45, 61, seed=2), 25.0, mode="L")
    _write_folder(train / "x_short", frames[:2], 25.0)
    _write_folder(train / "x_alpha", frames, 25.0, mode="RGBA")
    _write_folder(train / "x_no_landmarks", frames, 25.0, landmarks=False)
    _write_folder(train / "x_cut_frame", frames, 25.0)
    with open(train / "x_cut_frame" / "00010.png", "r+b") as f:
        f.truncate(200)
    os.makedirs(train / "x_empty")
    _write_folder(test / "t_png", frames, 25.0)
    return str(root)


def test_frame_dir_skips_bad_folders_and_gives_exact_clips(face_videos, frame_root):
    fx = face_videos
    source = FrameFolderSource(frame_root, "train", image_size=32, min_frames=3, verify=True)
    assert source.names == ["a_png", "b_jpg", "c_gray_odd"]
    assert source.report.skipped == collections.Counter(
        too_short=2, alpha_channel=1, no_landmarks=1, corrupt_frame=1
    )
    assert source.report.adjusted == collections.Counter(grayscale=1, odd_size=1, center_cropped=1)
    assert [source[i].fps for i in range(3)] == [25.0, 30.0, 25.0]
    config = _data_config("frame_dir", frame_root)
    iterator = iter(build_clip_dataset(config, split="train", batch_size=3, seed=0))
    for batch in _take(iterator, 3):
        idx_BK = batch["frame_indices_BK"]
        np.testing.assert_array_equal(fx.read_codes(batch["video_BKHWC"]), idx_BK)
        fps_B = np.array([source[int(v)].fps for v in batch["video_id_B"]])
        np.testing.assert_allclose(
            batch["times_BK"], (idx_BK - idx_BK[:, :1]) / fps_B[:, None], atol=1e-6
        )


@pytest.mark.slow  # a training run on decoded H.264 videos
def test_training_steps_run_on_real_video_files(face_videos, tmp_path):
    from anchored_jax.training import loop
    from anchored_jax.training.tasks.sdit import SDiTTask
    from configs import sdit

    fx = face_videos
    config = sdit.get_config("tiny")
    config.data.update(dict(source="video_dir", clip_frames=3, max_window=12, min_window=3))
    config.data.root = fx.root
    config.data.verify_files = True
    config.model.update(dict(width=32, depth=1, num_heads=2, patch_size=8))
    config.training.update(dict(batch_size=8, num_steps=3, warmup_steps=1))
    config.checkpoint.every_steps = 100
    config.logging.update(
        dict(log_every_steps=1, eval_every_steps=100, eval_batches=1, sample_every_steps=100)
    )
    train = build_clip_dataset(config.data, split="train", batch_size=8, seed=0)
    test = build_clip_dataset(config.data, split="test", batch_size=8, seed=1)
    data = loop.TrainData(train_iter=iter(train), eval_data=[next(iter(test))])
    summary = loop.train(SDiTTask(config), str(tmp_path), data)
    assert summary["step"] == 3
    assert np.isfinite(summary["eval_loss"]) and 0 < summary["eval_loss"] < 10


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(face_videos):
    config = _data_config("video_dir", face_videos.root)
    in_process = _take(iter(build_clip_dataset(config, split="train", batch_size=4, seed=5)), 3)
    config.worker_count = 2
    workers = _take(iter(build_clip_dataset(config, split="train", batch_size=4, seed=5)), 3)
    for x, y in zip(in_process, workers, strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(source="video_dir", root=""), "data.root: expected the dataset folder"),
        (dict(source="tfds:"), "data.source: expected one of ['synthetic', 'video_dir'"),
        (dict(root=3), "data.root: expected a folder path (a string), got 3"),
        (dict(verify_files="yes"), "data.verify_files: expected True or False, got 'yes'"),
    ],
)
def test_real_source_fields_are_checked(overrides, message):
    from data_pipelines.pipeline import validate_data_config

    config = _data_config("frame_dir", "/data").to_dict()
    config.update(overrides)  # A plain dict first: ConfigDict would refuse the wrong types.
    with pytest.raises(ValueError) as e:
        validate_data_config(ml_collections.ConfigDict(config))
    assert str(e.value).startswith(message)


def test_a_missing_root_folder_is_one_line(tmp_path):
    config = _data_config("video_dir", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"^data.root: expected a folder .*nowhere/train with"):
        make_source(config, "train")
