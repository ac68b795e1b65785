"""The training loop: a resumed run repeats an uninterrupted one, and the loss falls."""

import json
import os

import jax
import numpy as np
import pytest

from anchored_jax.training import loop
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.tasks.sdit import SDiTTask
from configs import sdit
from data_pipelines.pipeline import build_clip_dataset


def small_config(num_steps: int):
    config = sdit.get_config("tiny")
    config.data.image_size = 32
    config.data.clip_frames = 3
    config.data.num_train_identities = 8
    config.data.num_test_identities = 2
    config.data.videos_per_identity = 2
    config.data.video_frames = 24
    config.data.max_window = 16
    config.model.width = 32
    config.model.depth = 2
    config.model.num_heads = 2
    config.model.patch_size = 8
    config.training.batch_size = 4
    config.mesh.num_devices = 1
    # One device of the eight simulated ones keeps these loop tests quick.
    config.training.num_steps = num_steps
    config.training.warmup_steps = 2
    config.training.ema_decay = 0.9
    config.checkpoint.every_steps = 100
    config.checkpoint.async_save = True
    config.logging.log_every_steps = 2
    config.logging.eval_every_steps = 100
    config.logging.eval_batches = 1
    config.logging.sample_every_steps = 100
    config.logging.sample_clips = 2
    config.logging.sample_steps = 2
    return config


def run(config, workdir, stop_at_step=None):
    train = build_clip_dataset(config.data, split="train", batch_size=4, seed=0)
    test = build_clip_dataset(config.data, split="test", batch_size=4, seed=1)
    data = loop.TrainData(train_iter=iter(train), eval_data=[next(iter(test))])
    return loop.train(SDiTTask(config), str(workdir), data, stop_at_step=stop_at_step)


def restored_state_and_iterator(config, workdir, step):
    """The saved train state as numpy, and the saved data-iterator position."""
    abstract = jax.eval_shape(SDiTTask(config).init)
    checkpoints = RunCheckpoints(str(workdir), config.checkpoint)
    data_iter = iter(build_clip_dataset(config.data, split="train", batch_size=4, seed=0))
    state = checkpoints.restore(step, abstract, data_iter)
    checkpoints.close()
    return jax.tree.map(np.asarray, state), data_iter.get_state()


@pytest.mark.slow  # two full runs; the SIGTERM resume test stays in the default run
def test_resume_equals_uninterrupted_run(tmp_path):
    config = small_config(num_steps=6)
    run(config, tmp_path / "straight")
    run(config, tmp_path / "resumed", stop_at_step=3)
    assert RunCheckpoints(str(tmp_path / "resumed"), config.checkpoint).latest_step() == 3
    summary = run(config, tmp_path / "resumed")
    assert summary["step"] == 6

    straight, straight_iter = restored_state_and_iterator(config, tmp_path / "straight", 6)
    resumed, resumed_iter = restored_state_and_iterator(config, tmp_path / "resumed", 6)
    assert int(straight.step) == int(resumed.step) == 6
    assert straight_iter == resumed_iter  # Same position in the same data order.
    leaves_a, leaves_b = jax.tree.leaves(straight), jax.tree.leaves(resumed)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The run did move: params differ from a 3-step run's.
    early, _ = restored_state_and_iterator(config, tmp_path / "resumed", 3)
    moved = [
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(early.params), jax.tree.leaves(resumed.params))
    ]
    assert any(moved)


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_training_writes_events_checkpoints_samples_and_loss_falls(tmp_path):
    config = small_config(num_steps=40)
    config.training.learning_rate = 3e-3
    config.logging.eval_every_steps = 40
    config.logging.sample_every_steps = 40
    summary = run(config, tmp_path)
    assert summary["eval_loss"] < summary["initial_eval_loss"] - 0.1
    assert summary["eval_loss"] < summary["eval_zeros_loss"]
    files = os.listdir(tmp_path)
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert os.path.exists(tmp_path / "samples" / "step_0000040.png")
    lines = [json.loads(line) for line in open(tmp_path / "eval_metrics.jsonl")]
    assert [line["step"] for line in lines] == [0, 40]
    assert RunCheckpoints(str(tmp_path), config.checkpoint).latest_step() == 40


@pytest.mark.parametrize("bad", ["model.attention", "diffusion.prediction"])
def test_validate_rejects_unknown_choices(bad):
    from anchored_jax.training.config_checks import ConfigError, validate_sdit_config

    config = small_config(num_steps=1)
    section, field = bad.split(".")
    config[section][field] = "bogus"
    with pytest.raises(ConfigError, match=bad.replace(".", r"\.")):
        validate_sdit_config(config)
