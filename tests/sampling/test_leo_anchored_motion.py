"""The anchored LMDM: overlapping windows on one timeline, anchored at alpha_1, split freely."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.sampling.leo_anchored_motion import (
    anchored_motion,
    join_statistics,
    motion_plan,
)
from anchored_jax.sampling.leo_motion_generation import sample_motion
from anchored_jax.sampling.video_generation import sampler_mesh

L, M = 6, 8
CONFIG = LmdmConfig(motion_dim=M, length=L, width=32, depth=1, num_heads=2)
SCHEDULE = make_schedule("cosine", 100)
KW = dict(length=L, num_steps=4, prediction="x0")


@pytest.fixture(scope="module")
def model():
    """A denoiser with a random output layer (the trained one starts at 0)."""
    lmdm = LatentMotionDenoiser(CONFIG, rngs=nnx.Rngs(0))
    lmdm.out.kernel[...] = 0.3 * jax.random.normal(jax.random.key(1), lmdm.out.kernel.shape)
    return nnx.split(lmdm)


def test_plan_covers_every_step_with_overlapping_windows():
    plan = motion_plan(23, L, overlap=2)  # windows of 5, stride 3, steps 1..22
    assert plan.width == L - 1 and plan.starts == (1, 4, 7, 10, 13, 16, 18)
    index = plan.index_SW()
    assert index.min() == 1 and index.max() == 22
    assert set(index.ravel()) == set(range(1, 23))
    np.testing.assert_array_equal(plan.weight_W(), [1, 2, 3, 2, 1])
    # nearest: every step belongs to exactly one window, the one it sits most centrally in.
    owners = plan.weight_SW("nearest")
    counts = np.zeros(23)
    np.add.at(counts, index, owners)
    np.testing.assert_array_equal(counts[1:], 1.0)
    assert owners[0].tolist() == [1, 1, 1, 1, 0]  # step 4: weight 2 here, 1 in window 1
    with pytest.raises(ValueError, match="blend"):
        plan.weight_SW("max")
    short = motion_plan(4, L)  # fewer steps than a window: one window of T - 1
    assert short.starts == (1,) and short.width == 3


def test_one_window_is_the_first_frame_conditioned_sample(model):
    graphdef, params = model
    alpha1 = jax.random.normal(jax.random.key(2), (2, M)) * 3.0
    key = jax.random.key(3)
    anchored = anchored_motion(graphdef, params, SCHEDULE, alpha1, key, num_frames=L, **KW)
    direct = sample_motion(graphdef, params, SCHEDULE, alpha1, key, **KW)
    np.testing.assert_allclose(anchored, direct, atol=1e-5)


def _reference_timeline_sample(graphdef, params, alpha1, key, num_frames, overlap, blend):
    """The co-denoising written out step by step in numpy-level jax, one window at a time."""
    from anchored_jax.diffusion.objectives import predict_x0_and_eps
    from anchored_jax.diffusion.samplers import ddim_step, timestep_spacing

    model = nnx.merge(graphdef, params)
    plan = motion_plan(num_frames, L, overlap)
    weight_SW = plan.weight_SW(blend)
    b = alpha1.shape[0]
    x = np.asarray(jax.random.normal(key, (b, num_frames, M)), np.float64)
    x[:, 0] = 0.0
    t_steps = np.asarray(timestep_spacing(SCHEDULE.num_timesteps, KW["num_steps"]))
    for i, t in enumerate(t_steps):
        t_prev = t_steps[i + 1] if i + 1 < len(t_steps) else -1
        total = np.zeros_like(x)
        weight = np.zeros(num_frames)
        for start, w in zip(plan.starts, weight_SW):
            frames = np.arange(start, start + plan.width)
            m_t = np.concatenate([np.zeros((b, 1, M)), x[:, frames]], 1).astype(np.float32)
            t_bl = np.full((b, plan.width + 1), t, np.int32)
            t_bl[:, 0] = 0
            gap = jnp.full((b,), float(start))  # step 1 of the window is `start` after alpha_1
            out = model(jnp.asarray(m_t), jnp.asarray(t_bl), alpha1, gap_B=gap)
            x0 = np.asarray(predict_x0_and_eps("x0", SCHEDULE, m_t, t_bl, out)[0])[:, 1:]
            total[:, frames] += x0 * w[None, :, None]
            weight[frames] += w
        x0_all = total / np.maximum(weight, 1)[None, :, None]
        t_bt = np.full((b, num_frames), t, np.int32)
        t_prev_bt = np.full((b, num_frames), t_prev, np.int32)
        x = np.asarray(
            ddim_step("x0", SCHEDULE, jnp.asarray(x, jnp.float32), jnp.asarray(t_bt),
                      jnp.asarray(t_prev_bt), jnp.asarray(x0_all, jnp.float32), 0.0, None, False),
            np.float64,
        )  # fmt: skip
        x[:, 0] = 0.0
    return x + np.asarray(alpha1)[:, None]


@pytest.mark.parametrize("blend", ["triangular", "nearest"])
def test_overlapping_windows_average_their_shared_frames(model, blend):
    graphdef, params = model
    T = 23
    alpha1 = jax.random.normal(jax.random.key(4), (2, M)) * 3.0
    key = jax.random.key(5)
    steps = []
    out = anchored_motion(
        graphdef, params, SCHEDULE, alpha1, key, num_frames=T, chunk_size=3, overlap=2,
        blend=blend, progress=steps.append, **KW,
    )  # fmt: skip
    assert out.shape == (2, T, M) and len(steps) == KW["num_steps"]
    np.testing.assert_array_equal(np.asarray(out[:, 0]), np.asarray(alpha1))
    expected = _reference_timeline_sample(graphdef, params, alpha1, key, T, 2, blend)
    np.testing.assert_allclose(out, expected, atol=2e-4)
    # Chunking the windows is only a memory choice.
    one_call = anchored_motion(
        graphdef, params, SCHEDULE, alpha1, key, num_frames=T, overlap=2, blend=blend, **KW
    )
    np.testing.assert_allclose(out, one_call, atol=1e-5)


@pytest.mark.slow  # the default run covers the mesh path in tests/launch/test_leo_generate_cli.py
def test_sharded_over_devices_equals_one_device(model):
    graphdef, params = model
    T = 31  # 7 windows per sequence, 14 in all, over 8 devices (padding)
    alpha1 = jax.random.normal(jax.random.key(6), (2, M)) * 3.0
    key = jax.random.key(7)
    one = anchored_motion(graphdef, params, SCHEDULE, alpha1, key, num_frames=T, **KW)
    mesh = sampler_mesh(0, 14)
    assert mesh is not None and mesh.size == 8
    split = anchored_motion(
        graphdef, params, SCHEDULE, alpha1, key, num_frames=T, mesh=mesh, chunk_size=16, **KW
    )
    np.testing.assert_allclose(split, one, atol=1e-5)


def test_join_statistics_reference_values():
    alpha = np.zeros((1, 9, 1))
    alpha[0, :, 0] = [0, 1, 2, 3, 1, 2, 3, 1, 2]  # blocks of 3 after step 0 (L = 4)
    stats = join_statistics(alpha, length=4)
    assert stats["join_delta_mean"] == pytest.approx(2.0)  # steps 3 -> 4 and 6 -> 7
    assert stats["within_delta_mean"] == pytest.approx(1.0)
