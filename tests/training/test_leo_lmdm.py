"""LMDM training: landmark motion codes, a falling loss, exact resume, 1024-frame chaining."""

import jax
import ml_collections
import numpy as np
import pytest

from anchored_jax.training import loop
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.tasks.lmdm import LmdmTask
from configs.lmdm import get_config
from data_pipelines.motion_codes import (
    build_anchored_window_dataset,
    build_window_dataset,
    code_windows,
    extract_codes,
    landmark_projection,
    read_code_file,
)
from launch.train_lmdm import run


def _tiny_config(num_steps=50):
    config = get_config("tiny")
    config.data.code_source = "landmarks"  # the stand-in: no animator run in tests
    config.data.num_train_identities = 4
    config.data.num_test_identities = 2
    config.data.videos_per_identity = 2
    config.data.video_frames = 24
    config.model.length = 8
    config.model.width = 32
    config.model.depth = 1
    config.model.num_heads = 2
    config.diffusion.num_timesteps = 100
    config.diffusion.sample_steps = 4
    config.diffusion.prediction = "x0"  # the variant whose short-run chains stay bounded
    config.training.batch_size = 16
    config.training.num_steps = num_steps
    config.training.warmup_steps = 10
    config.training.learning_rate = 3e-3
    config.checkpoint.every_steps = 25
    config.checkpoint.async_save = False
    config.logging.log_every_steps = 10
    config.logging.eval_sequences = 8
    config.logging.chain_frames = 64
    config.logging.chain_sequences = 2
    return config


def test_landmark_codes_are_seeded_orthonormal_projections():
    p = landmark_projection(136, 20)
    np.testing.assert_allclose(p.T @ p, np.eye(20), atol=1e-5)
    np.testing.assert_array_equal(p, landmark_projection(136, 20))
    data = _tiny_config().data
    codes = extract_codes(data, "train", motion_dim=20)
    assert codes.shape == (8, 24, 20)
    deltas = np.abs(np.diff(codes, axis=1)).mean()
    assert 0.005 < deltas < 1.0  # moving, smoothly: faces change a little every frame
    with pytest.raises(ValueError, match="data.code_source"):
        extract_codes(
            ml_collections.ConfigDict({**data, "code_source": "pixels"}), "train", motion_dim=20
        )


def test_window_dataset_serves_real_windows_deterministically():
    codes = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    windows = code_windows(codes, 4, 3)
    assert windows.shape == (6, 4, 3)
    batch = next(iter(build_window_dataset(windows, batch_size=4, seed=1)))["codes_BLM"]
    again = next(iter(build_window_dataset(windows, batch_size=4, seed=1)))["codes_BLM"]
    np.testing.assert_array_equal(batch, again)
    for w in batch:  # every window is consecutive frames of one video
        np.testing.assert_array_equal(np.diff(w[:, 0]), 3.0)


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_training_lowers_the_loss_and_chains_1024_frames(tmp_path):
    config = _tiny_config()
    config.data.code_file = str(tmp_path / "codes.npz")
    config.logging.chain_frames = 1024
    summary = run(config, str(tmp_path / "run"))
    assert read_code_file(config.data.code_file).shape == (8, 24, 20)
    assert summary["step"] == 50
    assert summary["final_loss"] < 0.6 * summary["first_logged_loss"], summary
    assert np.isfinite(summary["generated_delta_mean"])
    # LEO chaining: 1024 finite codes whose norm stays in the range of the data's.
    assert summary["chain_finite"]
    norms = summary["chain_norm"]
    assert max(norms["norm_max"]) < 1.5 * norms["norm_mean"][0], norms
    assert max(norms["drift_max"]) < 0.5 * norms["norm_mean"][0], norms


@pytest.mark.slow
def test_resumed_training_matches_the_uninterrupted_run(tmp_path):
    config = _tiny_config(num_steps=40)
    config.checkpoint.every_steps = 20
    codes = extract_codes(config.data, "train", motion_dim=20)
    windows = code_windows(codes, 8, 4)

    config.training.num_steps = 40
    config.logging.chain_frames = 8  # the final evaluation is not what this test checks
    task = LmdmTask(config)

    def train(workdir, stop_at_step=None):
        data = loop.TrainData(
            train_iter=iter(
                build_anchored_window_dataset(
                    codes, length=8, gaps=config.data.window_gaps, batch_size=16, seed=0
                )
            ),
            eval_data=windows,
        )
        return loop.train(task, str(tmp_path / workdir), data, stop_at_step=stop_at_step)

    def saved_state(workdir):
        checkpoints = RunCheckpoints(str(tmp_path / workdir), config.checkpoint)
        state = checkpoints.restore(40, jax.eval_shape(task.init))
        checkpoints.close()
        return jax.tree.leaves(state)

    full = train("full")
    assert train("split", stop_at_step=20)["step"] == 20
    resumed = train("split")
    assert resumed["step"] == 40 and resumed["final_loss"] == full["final_loss"]
    for a, b in zip(saved_state("full"), saved_state("split"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "field, value",
    [("diffusion.condition_dropout", 1.5), ("model.num_heads", 5), ("data.code_source", "x")],
)
def test_bad_config_exits_with_one_line_naming_the_field(tmp_path, field, value):
    config = _tiny_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(SystemExit, match=field.replace(".", r"\.")):
        run(config, str(tmp_path / "bad"))
