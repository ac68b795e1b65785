"""`python -m launch.train --config configs/animator.py:tiny`: one-line errors; checkpoints and
resume of the animator run."""

import json
import os

import ml_collections
import pytest

from configs.animator import get_config
from data_pipelines.synthetic_landmark_regressor import CACHE_ENV
from tests.cli_testing import one_line_error, run_train

TINY = "configs/animator.py:tiny"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--config.model.image_size=48", "model.image_size: expected a power of two"),
        ("--config.losses.perceptual_weight=1.0", "losses.vgg19_weights: the perceptual loss"),
        ("--config.data.max_pair_gap=-1", "data.max_pair_gap: expected an integer >= 0"),
        ("--config.data.near_pair_fraction=1.5", "data.near_pair_fraction: expected a number in"),
        ("--config.data.near_pair_gap=0", "data.near_pair_gap: expected an integer >= 1"),
        ("--config.losses.l2_weight=-1.0", "losses.l2_weight: expected >= 0"),
        ("--config.losses.landmark_weight=-2.0", "losses.landmark_weight: expected >= 0"),
        (
            "--config.losses.landmark_weight=5.0 --config.losses.landmark_parts=lips",
            "losses.landmark_parts: expected comma-separated parts of ['all', 'jaw',",
        ),
        (
            "--config.losses.landmark_weight=5.0 --config.losses.landmark_sigma=0.0",
            "losses.landmark_sigma: expected >= 0.1 pixels, got 0.0",
        ),
        ("--config.losses.keypoint_weight=-1.0", "losses.keypoint_weight: expected >= 0"),
        (
            "--config.losses.keypoint_weight=0.1 --config.data.source=videos:/nowhere",
            "losses.keypoint_weight: the keypoint loss's landmark regressor is trained on the "
            "synthetic faces; expected data.source='synthetic', got 'videos:/nowhere'",
        ),
        (
            "--config.losses.keypoint_weight=0.1 --config.losses.keypoint_parts=eyes,ears",
            "losses.keypoint_parts: expected comma-separated parts of ['all', 'jaw',",
        ),
        ("--config.model.rgb_input=decoder", "model.rgb_input: expected one of ['warped',"),
        ("--config.model.init=zeros", "model.init: expected one of ['lia', 'identity']"),
        ("--config.training.gen_lr_schedule=step", "training.gen_lr_schedule: expected one of"),
    ],
)
def test_bad_animator_config_gives_one_line(tmp_path, monkeypatch, override, expected):
    # An empty regressor cache: the tiny config's keypoint loss would train its landmark
    # regressor (~1.5 minutes) on first use, and every refusal must come before that.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    last = one_line_error(run_train(TINY, tmp_path / "run", *override.split()))
    assert expected in last, last
    assert not os.path.exists(tmp_path / "cache"), "the refusal came after compute"


def tiny_run_config():
    config = get_config("tiny")
    config.data.image_size = 32  # the smallest frames the data pipeline renders
    config.data.update(num_train_identities=2, num_test_identities=1, videos_per_identity=2)
    config.model.update(style_dim=16, motion_dim=4, channel_base=256, max_channels=8)
    config.training.update(batch_size=4, num_steps=6)
    # One device: 4 clips do not split over the 8 simulated devices of the default data mesh.
    config.mesh = ml_collections.ConfigDict(
        dict(num_devices=1, ici=dict(data=1, fsdp=1, tensor=1, sequence=1))
    )
    config.checkpoint.update(every_steps=3, async_save=False)
    config.logging.update(log_every_steps=2, eval_every_steps=3, eval_videos=2, eval_frames=3)
    config.logging.eval_akd = False  # the landmark regressor's first build takes ~1.5 minutes
    config.losses.keypoint_weight = 0.0  # so does the keypoint loss's (its own test below)
    return config


@pytest.mark.slow
def test_animator_run_checkpoints_and_resumes(tmp_path):
    from launch.train_animator import run

    config = tiny_run_config()
    first = run(config, str(tmp_path), stop_at_step=3)
    assert first["step"] == 3
    assert first["copy_l1"] > 0 and first["initial_recon_l1"] > 0
    assert os.path.isdir(tmp_path / "checkpoints" / "3")
    assert os.path.isfile(tmp_path / "figures" / "recon_0000003.png")
    resumed = run(config, str(tmp_path))
    assert resumed["step"] == 6 and "initial_recon_l1" not in resumed
    steps = [json.loads(line)["step"] for line in open(tmp_path / "eval_metrics.jsonl")]
    assert steps == [0, 3, 6]


@pytest.mark.slow
def test_animator_run_reports_akd_against_exact_landmarks(tmp_path, monkeypatch):
    import numpy as np

    from anchored_jax.evaluation import keypoint_metrics
    from data_pipelines.frame_pairs import make_pair_source
    from launch.train_animator import run

    # A stand-in extractor (the regressor's first build takes ~1.5 minutes): every landmark at
    # the frame centre, so both AKDs are the exact landmarks' mean distance from the centre.
    centre = lambda frames: np.full((len(frames), 68, 2), 0.5, np.float32)  # noqa: E731
    monkeypatch.setattr(keypoint_metrics, "landmark_extractor", lambda kind: centre)
    config = tiny_run_config()
    config.training.num_steps = 1
    config.logging.update(eval_akd=True, eval_every_steps=1)
    run(config, str(tmp_path))
    source = make_pair_source(config.data, "test")
    exact = np.stack([source[v].landmarks_TLC[:3, :, :2] for v in range(2)])
    want = np.sqrt(np.square((exact[:, 1:] - 0.5) * 32).sum(-1)).mean()
    rows = [json.loads(line) for line in open(tmp_path / "eval_metrics.jsonl")]
    assert [r["step"] for r in rows] == [0, 1]
    for row in rows:
        np.testing.assert_allclose([row["recon_akd"], row["copy_akd"]], want, rtol=1e-5)


@pytest.mark.slow
def test_animator_run_adds_the_keypoint_loss_of_a_seeded_regressor(tmp_path, monkeypatch):
    from data_pipelines import synthetic_landmark_regressor
    from launch.train_animator import run

    # The real regressor training and cache, on a small budget in a temporary cache.
    built = []
    real_load_or_train = synthetic_landmark_regressor.load_or_train

    def small_load_or_train(image_size, *, seed=0, **kwargs):
        built.append((image_size, seed))
        kwargs.update(steps=20, frames_per_video=2, cache_dir=tmp_path / "cache")
        return real_load_or_train(image_size, seed=seed, **kwargs)

    monkeypatch.setattr(synthetic_landmark_regressor, "load_or_train", small_load_or_train)
    losses = {}
    for weight in (0.0, 0.5):
        config = tiny_run_config()
        config.training.num_steps = 2
        config.logging.log_every_steps = 1
        config.losses.update(keypoint_weight=weight, keypoint_regressor_seed=3)
        losses[weight] = run(config, str(tmp_path / f"run{weight}"))["first_logged_loss"]
    assert built == [(32, 3)]  # only the run with the term built its regressor
    # Same init, same first batch: the first loss differs by 0.5 x a positive pixel distance.
    assert losses[0.5] > losses[0.0] + 1e-3, losses
