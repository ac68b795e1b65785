"""Edits change what they should and keep the rest: landmark edits and identity edits."""

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion import make_schedule
from anchored_jax.models.sdit import SDiT
from anchored_jax.sampling import motion_edits
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.sampling.video_generation import generate_video
from anchored_jax.training.train_state import split_model
from data_pipelines.sources import SyntheticFaceSource
from tests.models.sdit_testing import small_config


@pytest.fixture(scope="module")
def track():
    source = SyntheticFaceSource(
        "test", num_identities=1, videos_per_identity=1, num_frames=50, image_size=32,
        fps=25.0, seed=0,
    )  # fmt: skip
    return source[0].landmarks_TLC


def _rigid_spread(track_TLC):
    return track_TLC[:, motion_edits.RIGID_POINTS, :2].std(axis=0).mean()


def _mouth_opening(track_TLC):  # inner lips: 62 top, 66 bottom (iBUG)
    return np.linalg.norm(track_TLC[:, 62, :2] - track_TLC[:, 66, :2], axis=-1)


def test_freeze_head_pose_makes_the_head_static_and_keeps_the_mouth(track):
    frozen = motion_edits.freeze_head_pose(track)
    assert _rigid_spread(track) > 0.01
    # Yaw (and the jaw opening with the mouth) is not a similarity, so some motion of the
    # rigid points remains; the head's translation, roll and scale are gone.
    assert _rigid_spread(frozen) < 0.3 * _rigid_spread(track)
    centre = track[:, motion_edits.RIGID_POINTS, :2].mean(axis=1)
    frozen_centre = frozen[:, motion_edits.RIGID_POINTS, :2].mean(axis=1)
    assert frozen_centre.std(axis=0).max() < 1e-6 < 0.005 < centre.std(axis=0).max()
    np.testing.assert_allclose(frozen[0], track[0], atol=1e-6)
    opening, frozen_opening = _mouth_opening(track), _mouth_opening(frozen)
    assert np.ptp(opening) > 0.02
    np.testing.assert_allclose(frozen_opening, opening, rtol=0.15, atol=2e-3)


def test_mouth_scaling_brows_and_retiming(track):
    np.testing.assert_allclose(motion_edits.scale_mouth_motion(track, 1.0), track, atol=1e-6)
    doubled = motion_edits.scale_mouth_motion(track, 2.0)
    others = np.setdiff1d(np.arange(68), motion_edits.REGIONS["mouth"])
    np.testing.assert_array_equal(doubled[:, others], track[:, others])
    change = _mouth_opening(track) - _mouth_opening(track)[0]
    np.testing.assert_allclose(
        _mouth_opening(doubled) - _mouth_opening(doubled)[0], 2 * change, atol=0.01
    )
    raised = motion_edits.offset_region(track, "brows", (0.0, -0.03))
    np.testing.assert_allclose(raised[:, 17:27, 1], track[:, 17:27, 1] - 0.03, atol=1e-6)
    np.testing.assert_array_equal(raised[:, :17], track[:, :17])
    times = np.arange(50) / 25.0
    slow = motion_edits.retime(track, times, np.arange(0, times[-1] + 1e-9, 0.02))
    assert slow.shape[0] == 99
    np.testing.assert_allclose(slow[::2], track, atol=1e-6)
    np.testing.assert_allclose(slow[1::2], (track[:-1] + track[1:]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="edit.times"):
        motion_edits.retime(track, times, [0.0, 5.0])


def test_identity_swap_and_interpolation_with_the_same_noise():
    config = small_config(num_landmarks=5)
    graphdef, params = split_model(SDiT(config, rngs=nnx.Rngs(0)))
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    params = jax.tree.unflatten(
        treedef, [x + 0.2 * rng.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    )
    T = 7
    lm = rng.uniform(0.2, 0.8, (T, 5, 3)).astype(np.float32)
    a, b = (rng.uniform(-0.8, 0.8, (8, 8, 3)).astype(np.float32) for _ in range(2))
    plan = plan_segments(T, 4, 0, "contiguous")
    schedule = make_schedule("linear", 1000)
    settings = SamplerSettings(anchor="generated", num_steps=3)

    def render(identity, mix=None, source=None, s=settings):
        video, _ = generate_video(
            graphdef, params, schedule, prediction="v", plan=plan, landmarks_TLC=lm,
            frame_times_T=np.arange(T) / 25.0, identity=identity, source_HWC=source,
            settings=s, key=jax.random.key(0), identity_mix=mix,
        )  # fmt: skip
        return video

    video_a, video_b = render(a), render(b)
    assert np.abs(video_a - video_b).mean() > 0.01
    np.testing.assert_allclose(render(a, mix=(b, 0.0)), video_a, atol=1e-4)
    np.testing.assert_allclose(render(a, mix=(b, 1.0)), video_b, atol=1e-4)
    half = render(a, mix=(b, 0.5))
    d_a, d_b = np.abs(half - video_a).mean(), np.abs(half - video_b).mean()
    assert d_a > 1e-3 and d_b > 1e-3
    # Swap: another source is the known anchor and the identity; the motion is the same.
    known = SamplerSettings(num_steps=3)
    swapped = render(b, source=b, s=known)
    np.testing.assert_array_equal(swapped[0], b)
    assert np.abs(swapped[1:] - render(a, source=a, s=known)[1:]).mean() > 0.01
