"""The pipelines called the way a notebook would: load a run, give arrays, get frames."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.interop.lia_import import lia_generator_params
from anchored_jax.pipelines import leo, reenactment
from anchored_jax.pipelines.checkpoints import CheckpointLoadError, load_model, load_sdit
from anchored_jax.training.checkpointing import RunCheckpoints
from data_pipelines.inference_inputs import held_out_video, to_unit_range
from tests.launch.test_leo_animate_cli import TINY, lia_layout_state_dict, tiny_run_config


def test_reenact_a_source_with_a_driving_track_from_a_trained_run(tiny_sdit_run):
    model = load_sdit(tiny_sdit_run["workdir"])
    exported = load_sdit(tiny_sdit_run["export"])
    for got, want in zip(jax.tree.leaves(exported.params), jax.tree.leaves(model.params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    K = model.config.data.clip_frames
    T = 1 + 4 * (K - 1)  # four segments
    videos = held_out_video(model.config, 1, T)
    source_HWC = to_unit_range(videos.read_frames(0, [0])[0])  # another identity's face
    landmarks_TLC = videos[1].landmarks_TLC
    settings = reenactment.sampler_settings(model.config, num_steps=2, chunk_size=2)
    video = reenactment.reenact(model, source_HWC, landmarks_TLC, fps=25.0, settings=settings)
    assert video.shape == (T, 32, 32, 3) and np.isfinite(video).all()
    np.testing.assert_array_equal(video[0], source_HWC)  # the source is the known anchor
    assert np.abs(video[1:] - source_HWC).mean() > 1e-3  # the others are generated
    again = reenactment.reenact(model, source_HWC, landmarks_TLC, fps=25.0, settings=settings)
    np.testing.assert_array_equal(again, video)

    # Streamed in windows of two segments: the first window is exactly the run on its frames.
    windows = list(
        reenactment.stream_reenactment(
            model, source_HWC, landmarks_TLC, fps=25.0, settings=settings, window_segments=2
        )
    )
    assert [len(w) for w in windows] == [1 + 2 * (K - 1), 2 * (K - 1)]
    head = 1 + 2 * (K - 1)
    alone = reenactment.reenact(model, source_HWC, landmarks_TLC[:head], fps=25.0,
                                settings=settings)  # fmt: skip
    np.testing.assert_allclose(windows[0], alone, atol=1e-6)
    streamed = np.concatenate(windows)
    assert streamed.shape == video.shape and np.isfinite(streamed).all()
    np.testing.assert_array_equal(streamed[0], source_HWC)
    # A generated anchor couples the segments: it runs as one batch, never in windows.
    generated = dataclasses.replace(settings, anchor="generated")
    plan = reenactment.plan_segments(T, K, 0, "contiguous")
    assert reenactment.window_bounds(plan, generated, 2) == [(0, 4)]
    assert reenactment.window_bounds(plan, settings, 2) == [(0, 2), (2, 4)]


def test_the_loader_refuses_another_task_in_one_line(tiny_sdit_run):
    with pytest.raises(CheckpointLoadError, match="expected a animator run, got task 'sdit'"):
        load_model(tiny_sdit_run["workdir"], "animator")


def test_sampler_settings_come_from_the_run_and_flags_override(tiny_sdit_run):
    config = load_sdit(tiny_sdit_run["export"]).config
    settings = reenactment.sampler_settings(config)
    assert settings.num_steps == config.sampling.num_steps
    assert settings.landmark_scale == config.sampling.landmark_scale
    assert reenactment.sampler_settings(config, num_steps=3, landmark_scale=None).num_steps == 3


def test_animate_with_a_tiny_animator(tmp_path):

    # LIA-layout random weights: unlike a fresh generator's, its flows follow the motion.
    config = tiny_run_config()
    params = lia_generator_params(TINY, lia_layout_state_dict())
    save_inference_checkpoint(str(tmp_path / "animator"), config, params)
    animator = load_model(str(tmp_path / "animator"), "animator")
    rng = np.random.default_rng(0)
    size = config.data.image_size
    source_HWC = rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)
    driving_THWC = rng.uniform(-1, 1, (5, size, size, 3)).astype(np.float32)
    video, codes = leo.animate(animator, source_HWC, driving_THWC=driving_THWC, batch_size=2)
    assert video.shape == (5, size, size, 3) and codes.shape == (5, config.model.motion_dim)
    fns = leo.animator_fns(animator)
    np.testing.assert_allclose(codes, leo.encode_codes(fns, driving_THWC, 4), atol=1e-5)
    # Relative frame 0 moves the source by its own code alpha_s: the absolute render of alpha_s.
    alpha_s = leo.first_codes(fns, source_HWC[None])
    own = leo.render_codes(fns, source_HWC, alpha_s, mode="absolute", batch_size=1)
    np.testing.assert_allclose(video[0], own[0], atol=1e-4)
    assert np.abs(video[1:] - video[0]).mean() > 1e-4  # the driving motion moves the others
    with pytest.raises(ValueError, match="--batch_size: expected an int >= 1, got 0"):
        leo.animate(animator, source_HWC, driving_THWC=driving_THWC, batch_size=0)


def _animator_workdir(path, state, config) -> str:
    checkpoints = RunCheckpoints(
        str(path), ml_collections.ConfigDict(dict(max_to_keep=1, async_save=False))
    )
    checkpoints.save(1, state, None, config)
    checkpoints.close()
    return str(path)


def test_animator_runs_of_the_older_layout_load_and_a_missing_generator_is_one_line(tmp_path):
    config = tiny_run_config()
    params = lia_generator_params(TINY, lia_layout_state_dict())
    # Saved before the one loop: the generator sits at `gen_params`, not `params.gen`.
    old = _animator_workdir(tmp_path / "old", {"gen_params": params, "step": 1}, config)
    restored = nnx.to_pure_dict(load_model(old, "animator").params)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(nnx.to_pure_dict(params))):
        np.testing.assert_array_equal(got, want)
    # A state without the generator must not load as shape-only placeholders.
    bare = _animator_workdir(tmp_path / "bare", {"params": {"disc": {"w": np.ones(3)}}}, config)
    with pytest.raises(CheckpointLoadError, match=r"it holds no gen_params$"):
        load_model(bare, "animator")
