"""DDIM and DDPM steps with perfect predictors, and the timestep spacing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import (
    ddim_step,
    ddpm_posterior,
    ddpm_step,
    make_schedule,
    prediction_target,
    q_sample,
    timestep_spacing,
)

KINDS = ("epsilon", "v", "x0")


def _data(shape=(2, 3, 4, 4, 2), seed=2):
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.uniform(k0, shape, minval=-0.9, maxval=0.9)
    return x0, jax.random.normal(k1, shape)


@pytest.mark.parametrize("kind", KINDS)
def test_ddim_eta0_lands_on_q_sample_at_t_prev(kind):
    schedule = make_schedule("linear", 1000)
    x0, eps = _data()
    t_BK = jnp.array([[700, 300, 50], [999, 120, 10]], jnp.int32)
    t_prev_BK = jnp.array([[500, 200, 0], [800, 60, -1]], jnp.int32)
    x_t = q_sample(schedule, x0, t_BK, eps)
    model_out = prediction_target(kind, schedule, x0, eps, t_BK)
    x_prev = ddim_step(kind, schedule, x_t, t_BK, t_prev_BK, model_out)
    expected = q_sample(schedule, x0, jnp.maximum(t_prev_BK, 0), eps)
    # The t_prev = -1 frame is the final step: it lands on x0 itself.
    expected = jnp.where((t_prev_BK < 0)[..., None, None, None], x0, expected)
    np.testing.assert_allclose(x_prev, expected, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_ddim_final_step_returns_x0(kind):
    schedule = make_schedule("cosine", 1000)
    x0, eps = _data()
    t_B = jnp.array([0, 37], jnp.int32)
    x_t = q_sample(schedule, x0, t_B, eps)
    model_out = prediction_target(kind, schedule, x0, eps, t_B)
    x_prev = ddim_step(kind, schedule, x_t, t_B, -1, model_out, clip_x0=True)
    np.testing.assert_allclose(x_prev, x0, atol=1e-5)


def test_ddim_eta1_noise_term_matches_closed_form():
    schedule = make_schedule("linear", 1000)
    x0, eps = _data()
    z = jax.random.normal(jax.random.key(9), x0.shape)
    t, t_prev = 600, 400
    x_t = q_sample(schedule, x0, jnp.int32(t), eps)
    x_prev = ddim_step("epsilon", schedule, x_t, t, t_prev, eps, eta=1.0, noise=z)
    ab = np.asarray(schedule.alphas_cumprod, np.float64)
    a_t, a_p = ab[t], ab[t_prev]
    sigma = np.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
    expected = (
        np.sqrt(a_p) * np.asarray(x0)
        + np.sqrt(1 - a_p - sigma**2) * np.asarray(eps)
        + sigma * np.asarray(z)
    )
    np.testing.assert_allclose(x_prev, expected, atol=1e-4)


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_ddpm_posterior_mean_matches_closed_form(t):
    schedule = make_schedule("linear", 1000)
    x0, eps = _data(shape=(2, 4, 4, 1))
    x_t = q_sample(schedule, x0, jnp.full((2,), t, jnp.int32), eps)
    betas = 1e-4 + (0.02 - 1e-4) * np.arange(1000, dtype=np.float64) / 999.0
    ab = np.cumprod(1 - betas)
    coef1 = betas[t] * np.sqrt(ab[t - 1]) / (1 - ab[t])
    coef2 = (1 - ab[t - 1]) * np.sqrt(1 - betas[t]) / (1 - ab[t])
    var = betas[t] * (1 - ab[t - 1]) / (1 - ab[t])
    mean, variance = ddpm_posterior(schedule, x0, x_t, jnp.full((2,), t, jnp.int32))
    expected = coef1 * np.asarray(x0, np.float64) + coef2 * np.asarray(x_t, np.float64)
    np.testing.assert_allclose(mean, expected, atol=1e-5)
    np.testing.assert_allclose(variance[:, 0, 0, 0], [var, var], rtol=1e-4)
    # With a perfect predictor, one step is that mean plus sqrt(var) * noise.
    z = jax.random.normal(jax.random.key(5), x0.shape)
    x_prev = ddpm_step("epsilon", schedule, x_t, jnp.full((2,), t), eps, z)
    np.testing.assert_allclose(x_prev, expected + np.sqrt(var) * np.asarray(z), atol=1e-4)


def test_ddpm_step_at_t0_adds_no_noise():
    schedule = make_schedule("cosine", 1000)
    x0, eps = _data()
    t_BK = jnp.array([[0, 0, 5], [0, 3, 0]], jnp.int32)
    x_t = q_sample(schedule, x0, t_BK, eps)
    z = 100.0 * jnp.ones_like(x0)
    v = prediction_target("v", schedule, x0, eps, t_BK)
    x_prev = np.asarray(ddpm_step("v", schedule, x_t, t_BK, v, z))
    x_mean = np.asarray(ddpm_step("v", schedule, x_t, t_BK, v, jnp.zeros_like(z)))
    at_zero = np.asarray(t_BK) == 0
    np.testing.assert_allclose(x_prev[at_zero], np.asarray(x0)[at_zero], atol=1e-4)
    np.testing.assert_array_equal(x_prev[at_zero], x_mean[at_zero])
    assert np.all(np.abs(x_prev - x_mean)[~at_zero] > 0.1)  # frames with t > 0 did get noise


def test_timestep_spacing():
    np.testing.assert_array_equal(timestep_spacing(1000, 5), [999, 749, 500, 250, 0])
    full = np.asarray(timestep_spacing(1000, 1000))
    np.testing.assert_array_equal(full, np.arange(999, -1, -1))
    assert full.dtype == np.int32
    for steps in (1, 2, 7, 50, 333, 999):
        ts = np.asarray(timestep_spacing(1000, steps))
        assert ts.shape == (steps,) and ts[0] == 999 and np.all(np.diff(ts) < 0)
    with pytest.raises(ValueError, match="sampling.num_steps"):
        timestep_spacing(1000, 0)
    with pytest.raises(ValueError, match="sampling.num_steps"):
        timestep_spacing(10, 11)
