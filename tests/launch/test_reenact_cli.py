"""Reenactment from saved checkpoints (workdir and export layouts), the trained tiny run of
the session, outputs, and bad inputs."""

import os
import subprocess
import sys

import av
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from anchored_jax.pipelines import reenactment
from anchored_jax.pipelines.checkpoints import CheckpointLoadError as InferenceCheckpointError
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.optimizer import make_optimizer
from anchored_jax.training.sdit_setup import build_model
from anchored_jax.training.train_state import create_train_state, split_model
from configs.sdit import get_config
from data_pipelines.inference_inputs import InputError, load_driving_track
from data_pipelines.landmark_files import save_landmarks
from launch.reenact import reenact

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_run_config(width=32):
    config = get_config("tiny")
    config.model.width = width
    config.model.depth = 1
    config.model.num_heads = 2
    config.model.patch_size = 8
    config.model.identity_channels = (8, 16)
    config.data.num_test_identities = 2
    config.data.videos_per_identity = 1
    return config


def _perturbed_params(config, seed=0):
    _, params = split_model(build_model(config, config.seed))
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        treedef, [x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A training workdir (RunCheckpoints) and an exported checkpoint of the same EMA params."""
    root = tmp_path_factory.mktemp("ckpt")
    config = small_run_config()
    params = _perturbed_params(config)
    state = create_train_state(params, make_optimizer(config.training))
    state = state.replace(ema_params=_perturbed_params(config, seed=1))
    workdir = str(root / "workdir")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    run = RunCheckpoints(workdir, config.checkpoint)
    run.save(7, state, None, config)
    run.wait_until_finished()
    run.close()
    export = root / "export"
    os.makedirs(export)
    (export / "config.json").write_text(config.to_json_best_effort(indent=2))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(str(export / "ema_params"), state.ema_params)
    return dict(workdir=workdir, export=str(export), state=state, config=config, root=root)


def test_both_layouts_load_the_same_ema_params(checkpoints):
    for key in ("workdir", "export"):
        config, graphdef, params = load_sdit_for_inference(checkpoints[key])
        assert config.model.width == 32
        for got, want in zip(
            jax.tree.leaves(params), jax.tree.leaves(checkpoints["state"].ema_params)
        ):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(InferenceCheckpointError, match="expected a training workdir"):
        load_sdit_for_inference(str(checkpoints["root"]))
    with pytest.raises(InferenceCheckpointError, match="no such file"):
        load_sdit_for_inference(str(checkpoints["root"] / "missing"))


def test_a_checkpoint_from_another_config_gets_one_line(checkpoints, tmp_path):
    wrong = tmp_path / "wrong_export"
    os.makedirs(wrong)
    os.symlink(os.path.join(checkpoints["export"], "ema_params"), wrong / "ema_params")
    (wrong / "config.json").write_text(small_run_config(width=64).to_json_best_effort())
    with pytest.raises(InferenceCheckpointError, match="do not match its config") as info:
        load_sdit_for_inference(str(wrong))
    assert "\n" not in str(info.value)


def test_reenact_writes_videos_from_a_trained_run(tiny_sdit_run, tmp_path):
    model = load_sdit_for_inference(tiny_sdit_run["workdir"])
    settings = SamplerSettings(num_steps=2, chunk_size=2)
    out = str(tmp_path / "out.mp4")
    kw = dict(frames=9, settings=settings, display=32, loaded=model)
    result = reenact(tiny_sdit_run["workdir"], "synthetic:1", out, **kw)
    assert result["frames"] == 9
    for path, width in ((out, 32), (result["paths"][1], 32 * 4)):
        with av.open(path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 9 and frames[0].shape == (32, width, 3)
    # The written video is the pipeline's: frame 0 is the source (up to the codec's loss).
    track = load_driving_track("synthetic:1", model.config, 9, 25.0)
    video = reenactment.reenact(model, track.read_real(0, 1)[0], track.landmarks_TLC,
                                fps=track.fps, settings=settings)  # fmt: skip
    decoded = frames_of(out)
    expected = np.round((video + 1) * 127.5).clip(0, 255)
    assert np.abs(decoded.astype(np.float64) - expected).mean() < 6.0
    grid = np.asarray(Image.open(result["paths"][2]))
    assert grid.shape == (8 * 32, 4 * 32, 3)


def frames_of(path):
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_reenact_from_files_and_bad_inputs(checkpoints, tmp_path):
    loaded = load_sdit_for_inference(checkpoints["export"])
    rng = np.random.default_rng(0)
    image = tmp_path / "face.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    landmarks = tmp_path / "motion.npz"
    save_landmarks(landmarks, rng.uniform(0.2, 0.8, (5, 68, 3)), 25.0, "synthetic68")
    kw = dict(settings=SamplerSettings(num_steps=1), display=32, loaded=loaded)
    result = reenact("x", str(landmarks), str(tmp_path / "a.mp4"), source=str(image), **kw)
    assert result["frames"] == 5 and len(frames_of(tmp_path / "a.mp4")) == 5
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(big)
    bad_npy = tmp_path / "bad.npy"
    np.save(bad_npy, np.zeros((5, 10, 3), np.float32))
    cases = [
        (dict(driving=str(landmarks), source=str(big)), "expected a 32x32 image"),
        (dict(driving=str(landmarks), source=str(tmp_path / "nope.png")), "no such image"),
        (dict(driving=str(bad_npy), source=str(image)), r"expected landmarks \[T, 68, 3\]"),
        (dict(driving=str(tmp_path / "nope.npz"), source=str(image)), "no such landmark file"),
        (dict(driving="synthetic:99"), "held-out video id"),
        (dict(driving="synthetic:0", frames=0), "--frames: expected at least 2 frames, got 0"),
    ]
    for args, match in cases:
        with pytest.raises(InputError, match=match):
            reenact("x", out=str(tmp_path / "b.mp4"), **args, **kw)
    assert not os.path.exists(tmp_path / "b.mp4")


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.reenact", "--checkpoint", str(tmp_path),
         "--driving", "synthetic:0", "--out", str(tmp_path / "o.mp4")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "expected a training workdir" in lines[0], proc.stderr[-2000:]
