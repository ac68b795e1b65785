"""Schedules and the forward process, against closed forms computed in float64 numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import coefficient_at, make_schedule, q_sample


@pytest.mark.parametrize("t", [0, 1, 10, 500, 999])
def test_linear_alpha_bar_matches_float64_product(t):
    schedule = make_schedule("linear", 1000)
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(1000, dtype=np.float64) / 999.0
    expected = np.prod(1.0 - betas[: t + 1])
    np.testing.assert_allclose(float(schedule.alphas_cumprod[t]), expected, rtol=1e-5)
    np.testing.assert_allclose(
        float(schedule.sqrt_one_minus_alphas_cumprod[t]), math.sqrt(1.0 - expected), rtol=1e-5
    )
    assert float(schedule.betas[0]) == pytest.approx(1e-4)
    assert float(schedule.betas[-1]) == pytest.approx(0.02)


@pytest.mark.parametrize("t", [0, 100, 500, 900])
def test_cosine_alpha_bar_matches_closed_form(t):
    schedule = make_schedule("cosine", 1000)
    s = 0.008

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    # alpha_bar at table index t is the continuous alpha_bar at u = (t + 1) / T.
    expected = f((t + 1) / 1000) / f(0.0)
    np.testing.assert_allclose(float(schedule.alphas_cumprod[t]), expected, rtol=2e-5)


def test_cosine_betas_are_clipped_and_alpha_bar_decreases():
    for kind in ("linear", "cosine"):
        schedule = make_schedule(kind, 1000)
        alpha_bar = np.asarray(schedule.alphas_cumprod)
        assert np.all(np.diff(alpha_bar) < 0), kind
        assert alpha_bar[0] < 1.0 and alpha_bar[-1] >= 0.0
    cosine = make_schedule("cosine", 1000)
    betas = np.asarray(cosine.betas)
    # The last unclipped beta would be 1.0 (f(1) = 0); the clip holds it at 0.999.
    assert betas.max() == pytest.approx(0.999)
    assert betas[-1] == pytest.approx(0.999)
    assert np.all(betas <= 0.999 + 1e-7)


def test_unknown_schedule_kind_names_the_field():
    with pytest.raises(ValueError, match=r"diffusion.schedule: expected one of \['linear', "):
        make_schedule("x")
    with pytest.raises(ValueError) as info:
        make_schedule("x")
    assert str(info.value) == "diffusion.schedule: expected one of ['linear', 'cosine'], got 'x'"


def test_schedule_is_a_pytree_with_static_length():
    schedule = make_schedule("linear", 50)
    leaves = jax.tree_util.tree_leaves(schedule)
    assert len(leaves) == 4 and all(leaf.shape == (50,) for leaf in leaves)
    doubled = jax.jit(lambda s: jax.tree_util.tree_map(lambda a: 2 * a, s))(schedule)
    assert doubled.num_timesteps == 50


def test_q_sample_per_frame_t_matches_numpy_loop():
    schedule = make_schedule("linear", 1000)
    k0, k1 = jax.random.split(jax.random.key(0))
    x0_BKHWC = jax.random.uniform(k0, (2, 3, 4, 4, 2), minval=-1, maxval=1)
    noise_BKHWC = jax.random.normal(k1, x0_BKHWC.shape)
    t_BK = jnp.array([[0, 250, 999], [0, 0, 600]], jnp.int32)
    x_t = np.asarray(q_sample(schedule, x0_BKHWC, t_BK, noise_BKHWC))

    alpha_bar = np.asarray(schedule.alphas_cumprod, np.float64)
    x0, noise = np.asarray(x0_BKHWC, np.float64), np.asarray(noise_BKHWC, np.float64)
    for b in range(2):
        for k in range(3):
            ab = alpha_bar[int(t_BK[b, k])]
            expected = math.sqrt(ab) * x0[b, k] + math.sqrt(1 - ab) * noise[b, k]
            np.testing.assert_allclose(x_t[b, k], expected, atol=1e-5)
    # Frames at t=0 stay within sqrt(1 - alpha_bar_0) = 0.01 noise of x0.
    t0 = np.asarray(t_BK) == 0
    bound = math.sqrt(1 - alpha_bar[0]) * np.abs(noise[t0]) + (1 - math.sqrt(alpha_bar[0])) + 1e-6
    assert np.all(np.abs(x_t[t0] - x0[t0]) <= bound)
    assert np.max(np.abs(x_t[t0] - x0[t0])) < 0.05


def test_q_sample_batch_t_and_shape_errors():
    schedule = make_schedule("cosine", 1000)
    x0_BHWC = jnp.ones((2, 3, 3, 1))
    x_t = q_sample(schedule, x0_BHWC, jnp.array([0, 999]), jnp.zeros_like(x0_BHWC))
    ab = np.asarray(schedule.sqrt_alphas_cumprod)
    np.testing.assert_allclose(np.asarray(x_t[:, 0, 0, 0]), [ab[0], ab[999]], rtol=1e-6)
    assert coefficient_at(schedule.betas, jnp.array([1, 2]), (2, 5, 5)).shape == (2, 1, 1)
    with pytest.raises(ValueError, match="diffusion.t"):
        q_sample(schedule, x0_BHWC, jnp.array([0, 1, 2]), jnp.zeros_like(x0_BHWC))
