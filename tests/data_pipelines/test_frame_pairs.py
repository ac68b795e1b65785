"""Frame-pair batches: both frames from one video, with that video's landmarks of each."""

import numpy as np

from configs.animator import get_config
from data_pipelines.frame_pairs import PAIR_BATCH_KEYS, build_pair_dataset, make_pair_source, pixels


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
