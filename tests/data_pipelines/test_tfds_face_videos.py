"""The TFDS face-video builder (ArrayRecord) and its reader through the grain pipeline."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines.pipeline import build_clip_dataset, make_source
from data_pipelines.tfds_face_videos import FaceVideos, TfdsVideoSource
from data_pipelines.video_files import VideoFileSource


@pytest.fixture(scope="module")
def tfds_dir(face_videos, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = FaceVideos(config="s32", data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=face_videos.root)
    )
    return data_dir


def test_built_shards_hold_every_good_video_with_its_frames_and_landmarks(face_videos, tfds_dir):
    fx = face_videos
    shards = os.listdir(os.path.join(tfds_dir, "face_videos", "s32", "1.0.0"))
    assert any(".array_record-" in name for name in shards)
    videos = VideoFileSource(fx.root, "train", image_size=32, min_frames=3, verify=True)
    source = TfdsVideoSource(
        "face_videos/s32", "train", data_dir=tfds_dir, image_size=32, min_frames=3
    )
    assert len(source) == len(videos) == len(fx.good_train)
    names = [source._example(i)["video_id"].decode() for i in range(len(source))]
    assert sorted(names) == sorted(fx.good_train)
    for video_id, name in enumerate(names):
        record, expected = source[video_id], videos[videos.names.index(name)]
        assert (record.num_frames, record.fps) == (fx.frames, fx.fps)
        assert record.identity_id == expected.identity_id
        np.testing.assert_allclose(record.landmarks_TLC, expected.landmarks_TLC, rtol=1e-6)
        np.testing.assert_array_equal(fx.read_codes(source.read_frames(video_id, [7, 2])), [7, 2])


def test_tfds_source_through_the_pipeline(face_videos, tfds_dir):
    config = ml_collections.ConfigDict(
        dict(
            source="tfds:face_videos/s32",
            root=tfds_dir,
            image_size=32,
            clip_frames=3,
            fps=25.0,
            video_frames=16,
            num_train_identities=1,
            num_test_identities=1,
            videos_per_identity=1,
            sampler="loguniform_gaps",
            min_window=3,
            max_window=16,
            identity_frame="first",
            seed=0,
            worker_count=0,
        )
    )
    assert len(make_source(config, "test")) == len(face_videos.good_test)
    iterator = iter(build_clip_dataset(config, split="train", batch_size=4, seed=0))
    for _ in range(2):
        batch = next(iterator)
        idx_BK = batch["frame_indices_BK"]
        np.testing.assert_array_equal(face_videos.read_codes(batch["video_BKHWC"]), idx_BK)
        np.testing.assert_allclose(batch["times_BK"], (idx_BK - idx_BK[:, :1]) / 25.0, atol=1e-6)
        np.testing.assert_array_equal(batch["identity_BHWC"], batch["video_BKHWC"][:, 0])


def test_a_missing_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"^data.source: could not open TFDS dataset 'face_vid"):
        TfdsVideoSource(
            "face_videos/s32", "train", data_dir=str(tmp_path), image_size=32, min_frames=3
        )


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["module", "tfds"])
def test_build_command_lines(face_videos, tmp_path, tool):
    if tool == "module":
        command = [sys.executable, "-m", "data_pipelines.build_face_videos_tfds"]
    else:
        # tensorflow-datasets 4.9's `tfds` command imports apache_beam at start.
        pytest.importorskip("apache_beam", reason="the tfds command needs apache-beam")
        builder_file = os.path.join("data_pipelines", "tfds_face_videos.py")
        command = [sys.executable, "-m", "tensorflow_datasets.scripts.cli.main", "build"]
        command += [builder_file, "--file_format", "array_record"]
    command += ["--config", "s32", "--manual_dir", face_videos.root, "--data_dir", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=".")
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    source = TfdsVideoSource(
        "face_videos/s32", "test", data_dir=str(tmp_path), image_size=32, min_frames=3
    )
    assert len(source) == len(face_videos.good_test)
