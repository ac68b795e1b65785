"""Non-finite steps are skipped and counted; too many in a row stop the run cleanly."""

import jax
import numpy as np
import pytest

from anchored_jax.parallel.logical_sharding import use_rules
from anchored_jax.training import loop
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.sdit_setup import make_sdit_setup
from anchored_jax.training.tasks.sdit import SDiTTask
from data_pipelines.pipeline import build_clip_dataset
from tests.training.test_trainer import small_config


def test_nan_batch_is_skipped_and_counted():
    config = small_config(num_steps=10)
    setup = make_sdit_setup(config)
    test = build_clip_dataset(config.data, split="test", batch_size=4, seed=1)
    good = next(iter(test))
    bad = dict(good, video_BKHWC=np.full_like(good["video_BKHWC"], np.nan))
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        before = [np.asarray(x) for x in jax.tree.leaves(state.params)]
        state, metrics = setup.train_step(state, setup.to_device(bad), jax.random.key(0))
        assert float(metrics["skipped_nonfinite"]) == 1.0 and not np.isfinite(
            float(metrics["loss"])
        )
        assert int(state.step) == 1 and int(state.nonfinite_streak) == 1
        after = [np.asarray(x) for x in jax.tree.leaves(state.params)]
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)  # Params untouched by the bad step.
        # Two good steps: the schedule's own count did not advance on the skip, so the first
        # real update still runs at the warm-up's zero learning rate.
        for i in (1, 2):
            state, metrics = setup.train_step(state, setup.to_device(good), jax.random.key(i))
    assert float(metrics["skipped_nonfinite"]) == 0.0
    assert int(state.nonfinite_streak) == 0 and int(state.nonfinite_total) == 1
    moved = [
        not np.array_equal(a, np.asarray(b)) for a, b in zip(after, jax.tree.leaves(state.params))
    ]
    assert any(moved)


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_consecutive_nonfinite_steps_stop_and_keep_the_last_checkpoint(tmp_path):
    config = small_config(num_steps=12)
    config.checkpoint.every_steps = 2
    config.training.max_nonfinite_steps = 3

    def poison_after_step_4(index, batch):
        if index >= 4:  # Batches 5, 6, 7, ... are all NaN.
            batch = dict(batch, video_BKHWC=np.full_like(batch["video_BKHWC"], np.nan))
        return batch

    train = build_clip_dataset(config.data, split="train", batch_size=4, seed=0)
    train = train.map_with_index(poison_after_step_4)
    test = build_clip_dataset(config.data, split="test", batch_size=4, seed=1)
    with pytest.raises(loop.NonFiniteTrainingError, match="3 consecutive non-finite steps"):
        data = loop.TrainData(train_iter=iter(train), eval_data=[next(iter(test))])
        loop.train(SDiTTask(config), str(tmp_path), data)
    checkpoints = RunCheckpoints(str(tmp_path), config.checkpoint)
    # Steps 5 and 6 were skipped; the step-6 checkpoint holds the step-4 params, still finite.
    assert checkpoints.latest_step() == 6
    checkpoints.close()
