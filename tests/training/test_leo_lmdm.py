"""LMDM training: landmark motion codes, a falling loss, exact resume, 1024-frame chaining."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion.objectives import prediction_target
from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, offsets_from_codes
from anchored_jax.training import loop
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.leo_losses import lmdm_loss
from anchored_jax.training.tasks.lmdm import LmdmTask, lmdm_config
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
    low, high = summary["delta_mean_rel_error_interval"]
    assert low <= summary["delta_mean_rel_error"] <= high
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


@pytest.mark.parametrize("weighting, offset", [("min_snr", 0.0), ("min_snr_plus_one", 1.0)])
@pytest.mark.parametrize("prediction", ["x0", "epsilon", "v"])
def test_snr_weighted_loss_by_hand(prediction, weighting, offset):
    """min(SNR + offset, 5) x the squared x0 error of each noised step, however the target is
    written."""
    config = _tiny_config()
    graphdef, params = nnx.split(LatentMotionDenoiser(lmdm_config(config), rngs=nnx.Rngs(0)))
    schedule = make_schedule("cosine", 100)
    codes_BLM = jax.random.normal(jax.random.key(1), (6, 8, 20))
    key = jax.random.key(2)
    common = dict(prediction=prediction, condition_dropout=0.0)
    loss = lmdm_loss(graphdef, params, schedule, codes_BLM, key, **common,
                     loss_weighting=weighting, min_snr_gamma=5.0)  # fmt: skip

    # The same draws as the loss: timesteps, then noise; the output layer starts at 0.
    k_t, k_noise, _ = jax.random.split(key, 3)
    t_B = np.asarray(jax.random.randint(k_t, (6,), 0, 100))
    m_BLM, _ = offsets_from_codes(codes_BLM)
    noise_BLM = jax.random.normal(k_noise, m_BLM.shape)
    t_BL = np.repeat(t_B[:, None], 8, axis=1)
    target = np.asarray(prediction_target(prediction, schedule, m_BLM, noise_BLM, t_BL))
    alpha_bar_B = np.asarray(schedule.alphas_cumprod)[t_B].astype(np.float64)
    snr_B = alpha_bar_B / (1.0 - alpha_bar_B)
    # The target's error is SNR (epsilon) or SNR + 1 (v) times the x0 error, squared-wise.
    in_x0 = {"x0": np.ones_like(snr_B), "epsilon": snr_B, "v": snr_B + 1.0}[prediction]
    weight_B = np.minimum(snr_B + offset, 5.0) / in_x0
    by_hand = (weight_B[:, None, None] * np.square(target[:, 1:])).mean()
    np.testing.assert_allclose(float(loss), by_hand, rtol=1e-4)
    plain = lmdm_loss(graphdef, params, schedule, codes_BLM, key, **common)
    np.testing.assert_allclose(float(plain), np.square(target[:, 1:]).mean(), rtol=1e-4)


@pytest.mark.parametrize(
    "field, value",
    [
        ("diffusion.condition_dropout", 1.5),
        ("diffusion.min_snr_gamma", 0.0),
        ("diffusion.loss_weighting", "snr"),
        ("model.num_heads", 5),
        ("data.code_source", "x"),
    ],
)
def test_bad_config_exits_with_one_line_naming_the_field(tmp_path, field, value):
    config = _tiny_config()
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(SystemExit, match=field.replace(".", r"\.")):
        run(config, str(tmp_path / "bad"))
