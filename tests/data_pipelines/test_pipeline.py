"""The grain clip pipeline: batch contents, determinism, shards, resumable state, config."""

import ml_collections
import numpy as np
import pytest

from data_pipelines.pipeline import BATCH_KEYS, build_clip_dataset, validate_data_config
from data_pipelines.sources import SyntheticFaceSource
from data_pipelines.synthetic_faces import TEST_IDENTITY_OFFSET


def _config(**overrides):
    config = ml_collections.ConfigDict(
        dict(
            source="synthetic",
            image_size=32,
            clip_frames=3,
            fps=25.0,
            video_frames=16,
            num_train_identities=4,
            num_test_identities=2,
            videos_per_identity=2,
            sampler="random_subset",
            min_window=3,
            max_window=8,
            identity_frame="random",
            seed=0,
            worker_count=0,
        )
    )
    config.update(overrides)
    return config


def _take(dataset_or_iterator, n):
    it = iter(dataset_or_iterator)
    return [next(it) for _ in range(n)]


def _source(config, split="train"):
    n = config.num_train_identities if split == "train" else config.num_test_identities
    return SyntheticFaceSource(
        split,
        num_identities=n,
        videos_per_identity=config.videos_per_identity,
        num_frames=config.video_frames,
        image_size=config.image_size,
        fps=config.fps,
        seed=config.seed,
    )


def test_batches_have_the_documented_keys_dtypes_shapes_and_contents():
    config = _config()
    (batch,) = _take(build_clip_dataset(config, split="train", batch_size=4, seed=0), 1)
    assert tuple(batch) == BATCH_KEYS
    B, K, S = 4, 3, 32
    expected = {
        "video_BKHWC": ((B, K, S, S, 3), np.float32),
        "times_BK": ((B, K), np.float32),
        "landmarks_BKLC": ((B, K, 68, 3), np.float32),
        "identity_BHWC": ((B, S, S, 3), np.float32),
        "frame_indices_BK": ((B, K), np.int32),
        "video_id_B": ((B,), np.int32),
        "identity_id_B": ((B,), np.int32),
    }
    for key, (shape, dtype) in expected.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype, key
    for key in ("video_BKHWC", "identity_BHWC"):
        assert -1.0 <= batch[key].min() < -0.5 and 0.5 < batch[key].max() <= 1.0
    idx = batch["frame_indices_BK"]
    assert np.all(np.diff(idx, axis=1) >= 1) and idx.min() >= 0 and idx.max() < 16
    assert np.all(batch["times_BK"][:, 0] == 0)
    np.testing.assert_allclose(batch["times_BK"], (idx - idx[:, :1]) / 25.0, atol=1e-6)

    source = _source(config)
    for b in range(B):
        video_id = int(batch["video_id_B"][b])
        assert batch["identity_id_B"][b] == video_id // 2
        record = source[video_id]
        np.testing.assert_array_equal(batch["landmarks_BKLC"][b], record.landmarks_TLC[idx[b]])
        pixels = source.read_frames(video_id, idx[b]).astype(np.float32) / 127.5 - 1
        np.testing.assert_allclose(batch["video_BKHWC"][b], pixels, atol=1e-6)
        # The identity image is some frame of the same video.
        all_frames = source.read_frames(video_id, np.arange(16)).astype(np.float32) / 127.5 - 1
        errors = np.abs(all_frames - batch["identity_BHWC"][b]).max(axis=(1, 2, 3))
        assert errors.min() < 1e-6


def test_identity_frame_first_is_the_clips_first_frame():
    config = _config(identity_frame="first")
    (batch,) = _take(build_clip_dataset(config, split="test", batch_size=4, seed=3), 1)
    np.testing.assert_array_equal(batch["identity_BHWC"], batch["video_BKHWC"][:, 0])
    assert np.all(batch["identity_id_B"] >= TEST_IDENTITY_OFFSET)


def test_same_seed_same_batches_and_another_seed_another_order():
    config = _config()
    a = _take(build_clip_dataset(config, split="train", batch_size=4, seed=7), 3)
    b = _take(build_clip_dataset(config, split="train", batch_size=4, seed=7), 3)
    for x, y in zip(a, b, strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key])
    c = _take(build_clip_dataset(config, split="train", batch_size=4, seed=8), 3)
    assert not all(
        np.array_equal(x["video_id_B"], y["video_id_B"]) for x, y in zip(a, c, strict=True)
    )
    # Every epoch is a fresh permutation of all 8 videos and fresh clips.
    epochs = _take(build_clip_dataset(config, split="train", batch_size=8, seed=7), 2)
    assert sorted(epochs[0]["video_id_B"]) == list(range(8))
    assert sorted(epochs[1]["video_id_B"]) == list(range(8))
    assert not np.array_equal(epochs[0]["frame_indices_BK"], epochs[1]["frame_indices_BK"])


def test_unshuffled_finite_run_visits_videos_in_order_and_stops():
    config = _config()
    batches = list(
        build_clip_dataset(config, split="train", batch_size=3, seed=0, num_epochs=2, shuffle=False)
    )
    ids = np.concatenate([b["video_id_B"] for b in batches])
    np.testing.assert_array_equal(ids, [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6])  # 16 // 3


def _rows(config, processes, per_process, n, seed=0, state=None):
    """The first n global batches as `processes` processes read them, rows concatenated."""
    iterators = []
    for p in range(processes):
        it = iter(build_clip_dataset(config, split="train", batch_size=per_process, seed=seed,
                                     shard_index=p, shard_count=processes))  # fmt: skip
        if state is not None:
            it.set_state(state)
        iterators.append(it)
    batches = []
    for _ in range(n):
        parts = [next(it) for it in iterators]
        batches.append({k: np.concatenate([part[k] for part in parts]) for k in BATCH_KEYS})
    states = [it.get_state() for it in iterators]
    assert all(s == states[0] for s in states), states  # one JSON on every process
    return batches, states[0]


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_global_batches_do_not_depend_on_the_process_count():
    config = _config(sampler="loguniform_gaps", anchor_position="anywhere")
    one, state_one = _rows(config, 1, 6, 5)
    two, state_two = _rows(config, 2, 3, 5)
    three, state_three = _rows(config, 3, 2, 5)
    _assert_same(one, two)
    _assert_same(one, three)
    assert state_one == state_two == state_three == {"next_global_clip": 30}
    # Each process holds different clips of the global batch, not copies of one another.
    assert len({tuple(r) for r in one[0]["frame_indices_BK"].tolist()}) > 3


def test_a_two_process_iterator_state_resumes_in_one_process_and_in_three():
    config = _config()
    straight, _ = _rows(config, 1, 6, 6, seed=4)
    _, saved = _rows(config, 2, 3, 2, seed=4)
    assert saved == {"next_global_clip": 12}
    in_one, _ = _rows(config, 1, 6, 4, seed=4, state=saved)
    in_three, _ = _rows(config, 3, 2, 4, seed=4, state=saved)
    _assert_same(in_one, straight[2:])
    _assert_same(in_three, straight[2:])


def test_bad_shard_arguments_and_iterator_states_are_one_line():
    config = _config()
    with pytest.raises(ValueError, match="shard_index"):
        build_clip_dataset(
            config, split="train", batch_size=1, seed=0, shard_index=3, shard_count=3
        )
    it = iter(build_clip_dataset(config, split="train", batch_size=2, seed=0))
    # A state from grain's own iterators (per process) is not a global position.
    with pytest.raises(ValueError, match=r"^data iterator state: expected \{'next_global_clip'"):
        it.set_state({"next_index": 4})
    with pytest.raises(ValueError, match="next_global_clip"):
        it.set_state({"next_global_clip": -2})


@pytest.mark.parametrize("sampler", ["uniform_stride", "loguniform_gaps"])
def test_iterator_state_resumes_exactly(sampler):
    config = _config(sampler=sampler)
    n, m = 3, 4
    dataset = build_clip_dataset(config, split="train", batch_size=3, seed=5)
    straight = _take(dataset, n + m)
    first = iter(build_clip_dataset(config, split="train", batch_size=3, seed=5))
    for _ in range(n):
        next(first)
    state = first.get_state()
    resumed = iter(build_clip_dataset(config, split="train", batch_size=3, seed=5))
    resumed.set_state(state)
    for expected in straight[n:]:
        got = next(resumed)
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.slow
def test_worker_processes_give_the_in_process_batches():
    config = _config()
    expected = _take(build_clip_dataset(config, split="train", batch_size=2, seed=1), 3)
    config.worker_count = 2
    got = _take(build_clip_dataset(config, split="train", batch_size=2, seed=1), 3)
    for x, y in zip(expected, got, strict=True):
        for key in BATCH_KEYS:
            np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            dict(source="videos"),
            "data.source: expected one of ['synthetic', 'video_dir', 'frame_dir', 'latents', "
            "'tfds:NAME'], got 'videos'",
        ),
        (
            dict(sampler="x"),
            "data.sampler: expected one of ['uniform_stride', 'random_subset', "
            "'loguniform_gaps'], got 'x'",
        ),
        (dict(image_size=16), "data.image_size: expected an integer in [32, 256], got 16"),
        (dict(image_size=512), "data.image_size: expected an integer in [32, 256], got 512"),
        (dict(clip_frames=0), "data.clip_frames: expected an integer >= 1, got 0"),
        (dict(worker_count=True), "data.worker_count: expected an integer >= 0, got True"),
        (dict(fps=0.0), "data.fps: expected a frame rate > 0, got 0.0"),
        (
            dict(identity_frame="last"),
            "data.identity_frame: expected one of ['random', 'first'], got 'last'",
        ),
        (dict(video_frames=2), "data.video_frames: expected >= data.clip_frames (3), got 2"),
        (
            dict(max_window=2, min_window=1),
            "data.max_window: expected >= data.clip_frames (3), got 2",
        ),
        (dict(min_window=9), "data.min_window: expected <= data.max_window (8), got 9"),
    ],
)
def test_bad_config_values_name_the_field(overrides, message):
    with pytest.raises(ValueError) as e:
        validate_data_config(_config(**overrides))
    assert str(e.value) == message


def test_missing_and_unknown_fields_are_named():
    config = _config()
    del config["max_window"]
    with pytest.raises(ValueError, match=r"^data.max_window: missing"):
        build_clip_dataset(config, split="train", batch_size=1, seed=0)
    config = _config()
    config.max_windo = 3
    with pytest.raises(ValueError, match=r"^data.max_windo: unknown field"):
        validate_data_config(config)


def test_anchor_anywhere_sits_before_inside_or_after_the_clip_at_every_distance():
    config = _config(
        anchor_position="anywhere", video_frames=512, max_window=100_000, min_window=3,
        sampler="loguniform_gaps", clip_frames=4, identity_frame="first",
    )  # fmt: skip
    batches = _take(build_clip_dataset(config, split="train", batch_size=16, seed=0), 16)
    index_NK = np.concatenate([b["frame_indices_BK"] for b in batches])
    times_NK = np.concatenate([b["times_BK"] for b in batches])
    anchor_N, others_NK = index_NK[:, 0], index_NK[:, 1:]
    # Slot 0 is the anchor: times are relative to it, and it is never one of the others.
    np.testing.assert_allclose(times_NK, (index_NK - anchor_N[:, None]) / 25.0, atol=1e-5)
    assert not (others_NK == anchor_N[:, None]).any()
    assert np.all(np.diff(others_NK, axis=1) > 0)
    before = (anchor_N < others_NK.min(1)).mean()
    after = (anchor_N > others_NK.max(1)).mean()
    assert before > 0.2 and after > 0.2 and before + after < 1.0  # and some inside
    # Log-uniform distance: near anchors and anchors hundreds of frames away are both common.
    nearest = np.abs(others_NK - anchor_N[:, None]).min(1)
    assert (nearest <= 8).mean() > 0.2 and (nearest >= 128).mean() > 0.1
    # The identity frame ("first") is the anchor frame.
    first = batches[0]
    np.testing.assert_array_equal(first["identity_BHWC"], first["video_BKHWC"][:, 0])


def test_anchor_position_is_validated():
    with pytest.raises(ValueError, match=r"data\.anchor_position: expected one of"):
        validate_data_config(_config(anchor_position="middle"))
