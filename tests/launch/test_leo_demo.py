"""launch.leo_demo end to end on tiny models: the videos, the frame grids, the plots and a
report whose numbers come from the videos written."""

import dataclasses
import functools
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from anchored_jax.evaluation.landmark_regressor import predict
from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.interop.lia_import import lia_generator_params
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.tasks.lmdm import init_lmdm
from configs import lmdm as lmdm_configs
from data_pipelines import synthetic_landmark_regressor as slr
from data_pipelines.video_decoding import probe_video
from launch.leo_demo import run_demo, tracked_landmarks
from tests.launch.test_leo_animate_cli import TINY, lia_layout_state_dict, tiny_run_config

L, FRAMES, SIZE = 6, 21, 32  # 32: the smallest frame the synthetic data sources render
ANIMATOR = dataclasses.replace(TINY, image_size=SIZE, channel_base=256)  # 8 channels at 32²


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("leo_demo")
    params = lia_generator_params(ANIMATOR, lia_layout_state_dict(config=ANIMATOR))
    animator_config = tiny_run_config(SIZE)
    animator_config.model.channel_base = ANIMATOR.channel_base
    save_inference_checkpoint(str(root / "animator"), animator_config, params)
    config = lmdm_configs.get_config("tiny")
    config.data.code_source = "landmarks"  # stand-in codes: no trained animator in tests
    config.data.update(image_size=SIZE, video_frames=24, num_test_identities=2)
    config.model.update(motion_dim=TINY.motion_dim, length=L, width=32, depth=1, num_heads=2)
    config.diffusion.sample_steps = 3
    config.checkpoint.async_save = False
    graphdef, _, state = init_lmdm(config, 0)
    model = nnx.merge(graphdef, state.params)  # a non-zero output layer: codes that move
    model.out.kernel[...] = 0.3 * jax.random.normal(jax.random.key(1), model.out.kernel.shape)
    lmdm_params = nnx.state(model, nnx.Param)
    checkpoints = RunCheckpoints(str(root / "lmdm"), config.checkpoint)
    checkpoints.save(1, state.replace(params=lmdm_params, ema_params=lmdm_params), None, config)
    checkpoints.close()
    world = dataclasses.replace(slr.default_world(), video_frames=16)
    regressor, _, _ = slr.load_or_train(
        SIZE, cache_dir=root / "regressor", steps=100, frames_per_video=4, world=world
    )
    return dict(root=root, animator=str(root / "animator"), lmdm=str(root / "lmdm"),
                landmarks_of=functools.partial(predict, regressor))  # fmt: skip


@pytest.mark.slow  # trains a small landmark regressor; about a minute in all
def test_the_demo_writes_videos_grids_plots_and_a_report(runs, tmp_path):
    out = str(tmp_path / "demo")
    result = run_demo(
        runs["animator"], runs["lmdm"], out, num_frames=FRAMES, sequences=2, display=16,
        landmarks_of=runs["landmarks_of"],
    )  # fmt: skip
    report = result["report"]
    for name in ("long_video.mp4", "edited.mp4"):
        probe = probe_video(os.path.join(out, name))
        assert probe.num_frames == FRAMES
    # Four captioned panels (real video, real codes, chain, anchored) of 16 px side by side.
    assert probe_video(os.path.join(out, "long_video.mp4")).width == 4 * 16
    assert probe_video(os.path.join(out, "edited.mp4")).width == 2 * 16
    for name in ("long_video_frames.png", "edited_frames.png", "motion_norm.png",
                 "drift_vs_distance.png", "sharpness_vs_distance.png"):  # fmt: skip
        assert Image.open(os.path.join(out, name)).size[0] > 16
    with open(os.path.join(out, "report.json")) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    vs_real = report["code_statistics"]["vs_real"]
    assert set(vs_real) == {"real", "chain", "anchored"}
    assert abs(vs_real["chain"]["delta_mean_rel_error"]) < 10  # finite, against real codes
    assert set(report["rendered"]) == {"real video", "real codes", "chain (LEO)", "anchored"}
    for numbers in report["rendered"].values():
        assert np.isfinite([numbers["drift_mean"], numbers["sharpness_mean"]]).all()
    # The glasses change frame 0 of the edited render, and the edit is carried on.
    assert report["edit"]["edit_change_frame0"] > 0.01 and report["edit"]["edit_kept"] > 0.3
    text = open(os.path.join(out, "report.md")).read()
    assert "| anchored |" in text and "Edited first frame" in text
    low, high = vs_real["anchored"]["delta_mean_rel_error_interval"]
    assert low <= vs_real["anchored"]["delta_mean_rel_error"] <= high
    assert f"[{100 * low:+.1f}, {100 * high:+.1f}]" in text  # the interval, in the table
    # Bad inputs: one line naming the flag, nothing computed.
    with pytest.raises(ValueError, match=r"--sequences: expected 1\.\.2"):
        run_demo(runs["animator"], runs["lmdm"], str(tmp_path / "x"), num_frames=FRAMES,
                 sequences=3, landmarks_of=runs["landmarks_of"])  # fmt: skip
    with pytest.raises(ValueError, match=r"--edit .*missing\.png"):
        run_demo(runs["animator"], runs["lmdm"], str(tmp_path / "y"), num_frames=FRAMES,
                 sequences=2, edit=str(tmp_path / "missing.png"),
                 landmarks_of=runs["landmarks_of"])  # fmt: skip


def test_landmarks_are_ibug68_and_frames_without_a_face_borrow_the_last_found():
    rng = np.random.default_rng(0)
    mesh_T = rng.uniform(0.2, 0.8, (4, 468, 2)).astype(np.float32)
    mesh_T[0] = np.nan  # no face in frames 0 and 2
    mesh_T[2] = np.nan
    points, found = tracked_landmarks(lambda frames: mesh_T, np.zeros((4, 8, 8, 3), np.float32))
    assert points.shape == (4, 68, 2) and found == 0.5 and np.isfinite(points).all()
    np.testing.assert_array_equal(points[0], points[1])  # before any face: the first found
    np.testing.assert_array_equal(points[2], points[1])  # after: the last found
    assert not np.array_equal(points[3], points[1])
    none, found = tracked_landmarks(
        lambda frames: np.full((2, 68, 2), np.nan), np.zeros((2, 8, 8, 3))
    )
    assert found == 0.0 and none.min() == 0.0 and none.max() == 1.0  # the whole frame
