"""Prediction targets, their inversion and the loss, checked with perfect predictors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import (
    diffusion_loss,
    make_schedule,
    predict_x0_and_eps,
    prediction_target,
    q_sample,
)

KINDS = ("epsilon", "v", "x0")


def _batch(schedule_kind="linear"):
    schedule = make_schedule(schedule_kind, 1000)
    k0, k1 = jax.random.split(jax.random.key(1))
    x0_BKHWC = jax.random.uniform(k0, (2, 4, 4, 4, 3), minval=-1, maxval=1)
    eps_BKHWC = jax.random.normal(k1, x0_BKHWC.shape)
    # Away from the schedule's ends, where dividing by a tiny a or s amplifies float32 error.
    t_BK = jnp.array([[20, 100, 400, 700], [50, 250, 550, 850]], jnp.int32)
    x_t = q_sample(schedule, x0_BKHWC, t_BK, eps_BKHWC)
    return schedule, x0_BKHWC, eps_BKHWC, t_BK, x_t


@pytest.mark.parametrize("schedule_kind", ["linear", "cosine"])
@pytest.mark.parametrize("kind", KINDS)
def test_perfect_predictor_recovers_x0_and_eps(kind, schedule_kind):
    schedule, x0, eps, t_BK, x_t = _batch(schedule_kind)
    target = prediction_target(kind, schedule, x0, eps, t_BK)
    x0_hat, eps_hat = predict_x0_and_eps(kind, schedule, x_t, t_BK, target)
    np.testing.assert_allclose(x0_hat, x0, atol=1e-5)
    np.testing.assert_allclose(eps_hat, eps, atol=1e-5)
    assert float(diffusion_loss(kind, schedule, target, x0, eps, t_BK)) == pytest.approx(0.0)


def test_v_target_matches_closed_form():
    schedule, x0, eps, t_BK, _ = _batch()
    v = np.asarray(prediction_target("v", schedule, x0, eps, t_BK))
    ab = np.asarray(schedule.alphas_cumprod, np.float64)[np.asarray(t_BK)][..., None, None, None]
    expected = np.sqrt(ab) * np.asarray(eps) - np.sqrt(1 - ab) * np.asarray(x0)
    np.testing.assert_allclose(v, expected, atol=1e-5)


def test_zero_epsilon_prediction_loss_is_mean_eps_squared():
    schedule, x0, eps, t_BK, _ = _batch()
    loss = diffusion_loss("epsilon", schedule, jnp.zeros_like(eps), x0, eps, t_BK)
    np.testing.assert_allclose(float(loss), float(np.mean(np.square(np.asarray(eps)))), rtol=1e-6)


def test_weight_excludes_frames_from_the_mean():
    schedule, x0, eps, t_BK, _ = _batch()
    weight_BK = jnp.array([[0, 1, 1, 0], [0, 1, 0, 0]], jnp.float32)
    loss = diffusion_loss("epsilon", schedule, jnp.zeros_like(eps), x0, eps, t_BK, weight_BK)
    kept = np.asarray(eps)[np.asarray(weight_BK) > 0]
    np.testing.assert_allclose(float(loss), float(np.mean(np.square(kept))), rtol=1e-6)
    # Errors on excluded frames do not move the loss at all.
    garbage = jnp.where(weight_BK[..., None, None, None] > 0, 0.0, 1e3)
    loss2 = diffusion_loss("epsilon", schedule, garbage, x0, eps, t_BK, weight_BK)
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6)
    zero = diffusion_loss("x0", schedule, eps, x0, eps, t_BK, jnp.zeros_like(weight_BK))
    assert float(zero) == 0.0


def test_unknown_prediction_kind_names_the_field():
    schedule, x0, eps, t_BK, x_t = _batch()
    with pytest.raises(ValueError, match="diffusion.prediction"):
        prediction_target("score", schedule, x0, eps, t_BK)
    with pytest.raises(ValueError, match="diffusion.prediction"):
        predict_x0_and_eps("score", schedule, x_t, t_BK, eps)
