"""The synthetic `VideoSource`: metadata records, on-demand frames, splits, pickling."""

import pickle

import numpy as np
import pytest

from data_pipelines.sources import SyntheticFaceSource, VideoRecord, VideoSource
from data_pipelines.synthetic_faces import TEST_IDENTITY_OFFSET, SyntheticVideo


def _source(split="train", **kw):
    args = dict(
        num_identities=3, videos_per_identity=2, num_frames=10, image_size=32, fps=25.0, seed=0
    )
    args.update(kw)
    return SyntheticFaceSource(split, **args)


def test_records_carry_ids_and_all_landmarks():
    source = _source()
    assert isinstance(source, VideoSource) and len(source) == 6
    record = source[5]
    assert isinstance(record, VideoRecord)
    assert (record.video_id, record.identity_id, record.num_frames, record.fps) == (5, 2, 10, 25.0)
    assert record.landmarks_TLC.shape == (10, 68, 3) and record.landmarks_TLC.dtype == np.float32
    expected = SyntheticVideo(seed=0, identity_id=2, video_index=1, fps=25.0).landmarks(
        np.arange(10)
    )
    np.testing.assert_array_equal(record.landmarks_TLC, expected)
    # Two videos of one identity share the face but not the motion.
    assert source[4].identity_id == 2
    assert not np.allclose(source[4].landmarks_TLC, record.landmarks_TLC)
    with pytest.raises(IndexError):
        source[6]


def test_read_frames_renders_only_the_requested_frames_in_order():
    source = _source()
    frames = source.read_frames(3, np.array([7, 2, 2]))
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[1], frames[2])
    np.testing.assert_array_equal(frames[0], source.read_frames(3, [7])[0])
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        source.read_frames(3, [10])


def test_test_split_holds_other_identities():
    train, test = _source("train"), _source("test", num_identities=2)
    train_ids = {train[i].identity_id for i in range(len(train))}
    test_ids = {test[i].identity_id for i in range(len(test))}
    assert train_ids == {0, 1, 2}
    assert test_ids == {TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET + 1}
    assert not np.array_equal(train.read_frames(0, [0]), test.read_frames(0, [0]))


def test_source_and_records_pickle_for_grain_workers():
    source = _source()
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone.read_frames(1, [4]), source.read_frames(1, [4]))
    record = pickle.loads(pickle.dumps(source[1]))
    np.testing.assert_array_equal(record.landmarks_TLC, source[1].landmarks_TLC)
    assert len(pickle.dumps(source)) < 4000  # numbers, not pixels


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        _source("validation")
    with pytest.raises(ValueError, match="num_frames"):
        _source(num_frames=0)
