"""Frame-pair batches: both frames from one video, with that video's landmarks of each."""

import numpy as np
import pytest

from configs.animator import get_config
from data_pipelines.frame_pairs import (
    PAIR_BATCH_KEYS,
    PairReader,
    build_pair_dataset,
    make_pair_source,
    pixels,
)
from data_pipelines.landmark_layouts import facemesh_to_ibug68
from data_pipelines.sources import VideoRecord


def test_pair_batches_carry_the_frames_and_landmarks_of_their_indices():
    data = get_config("tiny").data
    data.update(image_size=32, video_frames=12, num_train_identities=2, videos_per_identity=2)
    batch = next(iter(build_pair_dataset(data, split="train", batch_size=3, seed=0)))
    assert set(batch) == set(PAIR_BATCH_KEYS)
    assert batch["landmarks_B2L2"].shape == (3, 2, 68, 2)
    source = make_pair_source(data, "train")
    for b in range(3):
        video, (i, j) = int(batch["video_id_B"][b]), batch["frame_indices_B2"][b]
        frames = pixels(source.read_frames(video, np.array([i, j])))
        np.testing.assert_array_equal(batch["source_BHWC"][b], frames[0])
        np.testing.assert_array_equal(batch["driving_BHWC"][b], frames[1])
        want = source[video].landmarks_TLC[[i, j], :, :2]
        np.testing.assert_array_equal(batch["landmarks_B2L2"][b], want)
    assert 0.0 < batch["landmarks_B2L2"].min() and batch["landmarks_B2L2"].max() < 1.0


def test_near_pairs_are_drawn_within_their_gap_at_their_share():
    data = get_config("tiny").data
    data.update(image_size=32, video_frames=40, num_train_identities=2, videos_per_identity=2)

    def gaps(**fields):
        data.update(fields)
        batches = iter(build_pair_dataset(data, split="train", batch_size=50, seed=1))
        pairs = np.concatenate([next(batches)["frame_indices_B2"] for _ in range(2)])
        return np.abs(pairs[:, 0] - pairs[:, 1])

    assert gaps(near_pair_fraction=1.0, near_pair_gap=2).max() <= 2
    assert gaps(near_pair_fraction=1.0, max_pair_gap=1).max() <= 1  # the smaller gap wins
    # Half near: gaps <= 2 make up ~half + the ~12% a pair anywhere in 40 frames falls within 2.
    mixed = gaps(near_pair_fraction=0.5, max_pair_gap=0)
    assert 0.4 < np.mean(mixed <= 2) < 0.75 and mixed.max() > 20


def test_facemesh_tracks_are_carried_as_ibug68():
    mesh = np.random.default_rng(0).uniform(0.2, 0.8, (5, 468, 3)).astype(np.float32)
    record = VideoRecord(video_id=3, identity_id=0, num_frames=5, fps=25.0, landmarks_TLC=mesh)
    got = PairReader.ibug68(record, [4, 1])
    np.testing.assert_allclose(got, facemesh_to_ibug68(mesh[[4, 1]]), rtol=1e-6)
    bad = VideoRecord(3, 0, 5, 25.0, mesh[:, :100])
    with pytest.raises(ValueError, match="video 3's landmarks: landmark layout '100 points'"):
        PairReader.ibug68(bad, [0, 1])
