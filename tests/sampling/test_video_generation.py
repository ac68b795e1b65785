"""Whole videos from a small real sDiT: determinism, chunking, anchors, masking, edits' plumbing."""

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion import make_schedule
from anchored_jax.models.sdit import SDiT
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.sampling.video_generation import (
    compress_anchor_gaps,
    gather_segment_inputs,
    generate_video,
)
from anchored_jax.training.train_state import split_model
from tests.models.sdit_testing import small_config

SCHEDULE = make_schedule("linear", 1000)
T, K = 10, 4


@pytest.fixture(scope="module")
def model_parts():
    config = small_config(num_landmarks=5)
    graphdef, params = split_model(SDiT(config, rngs=nnx.Rngs(0)))
    # A freshly initialised sDiT has zeroed output gates and predicts exactly 0; perturb every
    # parameter so the output depends on every input, as a trained model's does.
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    leaves = [x + 0.2 * rng.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    params = jax.tree.unflatten(treedef, leaves)
    rng = np.random.default_rng(1)
    driving = dict(
        landmarks_TLC=rng.uniform(0.2, 0.8, (T, 5, 3)).astype(np.float32),
        frame_times_T=np.arange(T) / 25.0,
    )
    source = rng.uniform(-0.8, 0.8, (8, 8, 3)).astype(np.float32)
    return graphdef, params, driving, source


def _generate(parts, settings, plan=None, key=0, **overrides):
    graphdef, params, driving, source = parts
    kw = dict(
        prediction="v",
        plan=plan or plan_segments(T, K, 0, "contiguous"),
        identity=source,
        source_HWC=source,
        settings=settings,
        key=jax.random.key(key),
        **driving,
    )
    kw.update(overrides)
    return generate_video(graphdef, params, SCHEDULE, **kw)


def test_generated_anchor_is_bit_identical_and_sampling_is_deterministic(model_parts):
    settings = SamplerSettings(anchor="generated", num_steps=4, chunk_size=2)
    video, segments = _generate(model_parts, settings)
    assert video.shape == (T, 8, 8, 3)
    assert np.all(segments[:, 0] == segments[0, 0])
    np.testing.assert_array_equal(video[0], segments[0, 0])
    again, _ = _generate(model_parts, settings)
    np.testing.assert_array_equal(video, again)
    other, _ = _generate(model_parts, settings, key=1)
    assert np.abs(video - other).mean() > 0.05
    # Chunking bounds memory; it must not change the video beyond float rounding.
    whole, _ = _generate(model_parts, SamplerSettings(anchor="generated", num_steps=4))
    np.testing.assert_allclose(video, whole, atol=1e-4)


def test_known_anchor_video_starts_on_the_source_and_methods_differ(model_parts):
    source = model_parts[3]
    anchored, seg = _generate(model_parts, SamplerSettings(num_steps=4))
    np.testing.assert_array_equal(anchored[0], source)
    assert np.all(seg[:, 0] == source)
    independent, seg_i = _generate(model_parts, SamplerSettings(method="independent", num_steps=4))
    assert np.abs(seg_i[0, 0] - seg_i[1, 0]).mean() > 0.01  # no shared anchor
    assert np.abs(anchored[1:] - independent[1:]).mean() > 0.01
    ar, _ = _generate(model_parts, SamplerSettings(method="autoregressive", num_steps=4))
    np.testing.assert_array_equal(ar[0], source)
    # Segment 0 sees the same inputs in both (same noise, same anchor, same conditions).
    np.testing.assert_allclose(ar[1:4], anchored[1:4], atol=1e-4)
    assert np.abs(ar[4:] - anchored[4:]).mean() > 0.01


def test_padded_slots_do_not_reach_the_output(model_parts):
    # T=9 at K=4: the last contiguous segment owns 2 frames and pads 1 slot.
    plan = plan_segments(9, K, 0, "contiguous")
    assert (~plan.frame_mask_SK).sum() == 1
    graphdef, params, driving, source = model_parts
    lm = driving["landmarks_TLC"][:9]
    base = dict(frame_times_T=np.arange(9) / 25.0)
    settings = SamplerSettings(num_steps=3)
    video, _ = _generate(model_parts, settings, plan=plan, landmarks_TLC=lm, **base)
    # Moving the padding to another frame changes what sits in the padded slot only.
    moved = plan.frame_index_SK.copy()
    moved[~plan.frame_mask_SK] = 3
    object.__setattr__(plan, "frame_index_SK", moved)
    video_moved, _ = _generate(model_parts, settings, plan=plan, landmarks_TLC=lm, **base)
    np.testing.assert_allclose(video, video_moved, atol=1e-5)


def test_guidance_and_autoregressive_times(model_parts):
    plain, _ = _generate(model_parts, SamplerSettings(num_steps=3))
    guided, _ = _generate(
        model_parts, SamplerSettings(num_steps=3, identity_scale=2.0, landmark_scale=3.0)
    )
    assert np.abs(plain[1:] - guided[1:]).mean() > 0.01
    plan = plan_segments(T, K, 0, "contiguous")
    inputs = gather_segment_inputs(
        plan, model_parts[2]["landmarks_TLC"], np.arange(T) / 25.0, autoregressive=True
    )
    # Segment 1's slot 0 is frame 3, so its frames 4..6 sit 1..3 frames after it.
    np.testing.assert_allclose(inputs.times_SK[1], np.array([0, 1, 2, 3]) / 25.0, rtol=1e-6)


def test_compress_anchor_gaps_keeps_spacing_and_sign():
    times_SK = np.array([[0, 0.04, 0.08, 0.12], [0, 4.0, 4.04, 4.2], [0, -3.0, -2.96, -2.9]])
    out = compress_anchor_gaps(times_SK, 1.0)
    np.testing.assert_allclose(out[0], times_SK[0])  # already within range: untouched
    np.testing.assert_allclose(out[1], [0, 0.8, 0.84, 1.0], atol=1e-12)
    np.testing.assert_allclose(out[2], [0, -1.0, -0.96, -0.9], atol=1e-12)
    # A segment wider than the limit still keeps its spacing and stays one gap from slot 0.
    wide = compress_anchor_gaps(np.array([[0, 5.0, 7.0, 9.0]]), 1.0)
    np.testing.assert_allclose(wide, [[0, 2.0, 4.0, 6.0]], atol=1e-12)


def test_the_auto_anchor_gap_is_the_training_window():
    from anchored_jax.sampling.video_generation import training_window_s
    from configs import sdit

    config = sdit.get_config("tiny")
    # Anchors drawn from anywhere: the whole synthetic video; real videos: no limit.
    assert training_window_s(config) == pytest.approx((config.data.video_frames - 1) / 25.0)
    config.data.source = "video_dir"
    assert training_window_s(config) == 0.0
    config.data.anchor_position = "first"
    config.data.max_window, config.data.fps = 32, 25.0
    assert training_window_s(config) == pytest.approx(31 / 25.0)
    # Frames 10 s from the anchor come back inside the window, keeping their own spacing.
    times_SK = np.array([[0.0, 10.0, 10.04, 10.2]])
    out = compress_anchor_gaps(times_SK, training_window_s(config))
    assert out[0, -1] == pytest.approx(31 / 25.0)
    np.testing.assert_allclose(np.diff(out[0, 1:]), np.diff(times_SK[0, 1:]), atol=1e-9)


def test_a_capped_anchor_gap_says_so(caplog):
    from anchored_jax.sampling.video_generation import gather_segment_inputs

    plan = plan_segments(40, 4, 0, "contiguous")
    landmarks_TLC = np.zeros((40, 68, 3), np.float32)
    times_T = np.arange(40) / 25.0
    with caplog.at_level("WARNING"):
        gather_segment_inputs(plan, landmarks_TLC, times_T, max_anchor_gap_s=0.5)
    assert "9 of 13 segments reach further than 0.50 s" in caplog.text  # frames 13.. of 39
    caplog.clear()
    with caplog.at_level("WARNING"):
        inputs = gather_segment_inputs(plan, landmarks_TLC, times_T)
    assert caplog.text == ""
    np.testing.assert_allclose(inputs.times_SK[-1], times_T[[0, 37, 38, 39]], atol=1e-6)
