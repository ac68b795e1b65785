"""The jitted denoising loop, driven by an oracle denoiser that knows the clean clip."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import make_schedule, prediction_target
from anchored_jax.diffusion.schedules import coefficient_at
from anchored_jax.sampling.denoise_loop import sample

SHAPE_BKHWC = (2, 3, 4, 4, 2)


def _clip_and_noise(seed=0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.uniform(k0, SHAPE_BKHWC, minval=-0.9, maxval=0.9)
    return x0, jax.random.normal(k1, SHAPE_BKHWC)


def _oracle(schedule, x0_BKHWC, kind, seen=None):
    """Returns the exact `kind` target for whatever x_t and per-frame t_BK it is given."""

    def denoise_fn(x_t, t_BK):
        assert t_BK.shape == x_t.shape[:2] and t_BK.dtype == jnp.int32
        if seen is not None:
            jax.debug.callback(lambda t: seen.append(np.asarray(t)), t_BK)
        a = coefficient_at(schedule.sqrt_alphas_cumprod, t_BK, x_t.shape)
        s = coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t_BK, x_t.shape)
        eps = (x_t - a * x0_BKHWC) / s
        return prediction_target(kind, schedule, x0_BKHWC, eps, t_BK)

    return denoise_fn


@pytest.mark.parametrize("kind", ["epsilon", "v", "x0"])
def test_ddim_with_oracle_returns_x0(kind):
    schedule = make_schedule("linear", 1000)
    x0, noise = _clip_and_noise()
    out = sample(_oracle(schedule, x0, kind), schedule, noise, num_steps=10, prediction=kind)
    np.testing.assert_allclose(out, x0, atol=1e-4)


def test_ddpm_with_oracle_returns_x0_and_is_deterministic():
    schedule = make_schedule("cosine", 1000)
    x0, noise = _clip_and_noise(1)
    out = sample(
        _oracle(schedule, x0, "epsilon"),
        schedule,
        noise,
        num_steps=20,
        prediction="epsilon",
        sampler="ddpm",
        key=jax.random.key(7),
    )
    np.testing.assert_allclose(out, x0, atol=1e-4)
    # A model that predicts no noise makes the output depend on the sampler's own noise.
    zeros = jax.jit(
        lambda key: sample(
            lambda x, t: jnp.zeros_like(x),
            schedule,
            noise,
            num_steps=20,
            prediction="epsilon",
            sampler="ddpm",
            key=key,
        )
    )
    a, b, c = zeros(jax.random.key(7)), zeros(jax.random.key(7)), zeros(jax.random.key(8))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 1e-3


def test_known_frames_are_fed_at_t0_and_returned_exactly():
    schedule = make_schedule("linear", 1000)
    x0, noise = _clip_and_noise(2)
    # The known anchor values are something the oracle's x0 does not contain.
    anchor = jax.random.uniform(jax.random.key(11), SHAPE_BKHWC, minval=-3, maxval=3)
    known_mask = jnp.array([[True, False, False], [False, True, False]])
    seen = []
    out = sample(
        _oracle(schedule, x0, "v", seen),
        schedule,
        noise,
        num_steps=6,
        prediction="v",
        sampler="ddim",
        eta=0.5,
        key=jax.random.key(0),
        known_x0=anchor,
        known_mask=known_mask,
    )
    mask = np.asarray(known_mask)
    np.testing.assert_array_equal(np.asarray(out)[mask], np.asarray(anchor)[mask])
    np.testing.assert_allclose(np.asarray(out)[~mask], np.asarray(x0)[~mask], atol=1e-4)
    assert len(seen) == 6
    np.testing.assert_array_equal(np.stack([t[mask] for t in seen]), 0)
    np.testing.assert_array_equal([t[~mask][0] for t in seen], [999, 799, 599, 400, 200, 0])
    assert all(np.all(t[~mask] == t[~mask][0]) for t in seen)


def test_known_frames_enter_the_model_clean():
    schedule = make_schedule("linear", 1000)
    x0, noise = _clip_and_noise(3)
    known_mask = jnp.array([[True, False, False], [True, False, False]])
    fed = []

    def denoise_fn(x_t, t_BK):
        jax.debug.callback(lambda x: fed.append(np.asarray(x)), x_t)
        return jnp.zeros_like(x_t)

    sample(
        denoise_fn,
        schedule,
        noise,
        num_steps=3,
        prediction="epsilon",
        known_x0=x0,
        known_mask=known_mask,
    )
    for x_in in fed:
        np.testing.assert_array_equal(x_in[:, 0], np.asarray(x0)[:, 0])


def test_loop_jits_once_as_a_single_loop():
    schedule = make_schedule("linear", 1000)
    x0, noise = _clip_and_noise()
    traces = []

    def denoise_fn(x_t, t_BK):
        traces.append(1)
        return _oracle(schedule, x0, "epsilon")(x_t, t_BK)

    run = jax.jit(functools.partial(sample, denoise_fn, num_steps=50, prediction="epsilon"))
    hlo = run.lower(schedule, noise).as_text()
    assert "while" in hlo
    assert len(traces) == 1  # one trace of the model for 50 steps
    np.testing.assert_allclose(run(schedule, noise), x0, atol=1e-4)
    run(schedule, noise + 1.0)
    assert len(traces) == 1  # the calls reuse the trace made by lower()


def test_bad_arguments_name_the_field():
    schedule = make_schedule("linear", 1000)
    _, noise = _clip_and_noise()
    fn = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="sampling.sampler"):
        sample(fn, schedule, noise, num_steps=2, prediction="epsilon", sampler="euler")
    with pytest.raises(ValueError, match="diffusion.prediction"):
        sample(fn, schedule, noise, num_steps=2, prediction="eps")
    with pytest.raises(ValueError, match="sampling.key"):
        sample(fn, schedule, noise, num_steps=2, prediction="epsilon", sampler="ddpm")
    with pytest.raises(ValueError, match="sampling.known_mask"):
        sample(fn, schedule, noise, num_steps=2, prediction="epsilon", known_x0=noise)
