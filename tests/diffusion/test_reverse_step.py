"""The shared stepper: solver choices, learned-sigma outputs, known frames, the step walk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import make_schedule
from anchored_jax.diffusion.reverse_step import (
    Solver,
    hold_known_times,
    prediction_channels,
    reverse_scan,
)
from anchored_jax.diffusion.samplers import ddim_step, timestep_spacing

SCHEDULE = make_schedule("linear", 1000)


def test_bad_solver_choices_name_the_config_field():
    with pytest.raises(ValueError, match=r"^sampling.sampler: expected one of \['ddim', 'ddpm'\]"):
        Solver("epsilon", 5, sampler="euler")
    with pytest.raises(ValueError, match="prediction"):
        Solver("score", 5)
    assert not Solver("x0", 5).needs_noise
    assert Solver("x0", 5, eta=0.5).needs_noise and Solver("x0", 5, sampler="ddpm").needs_noise


def test_a_learned_sigma_output_steps_with_its_first_channels():
    rng = np.random.default_rng(0)
    x_t = jnp.asarray(rng.standard_normal((2, 3, 4, 4, 2)), jnp.float32)
    out = jnp.asarray(rng.standard_normal((2, 3, 4, 4, 4)), jnp.float32)
    np.testing.assert_array_equal(prediction_channels(out, x_t), out[..., :2])
    same = out[..., :2]
    assert prediction_channels(same, x_t) is same
    t = jnp.full((2, 3), 700, jnp.int32)
    t_prev = jnp.full((2, 3), 400, jnp.int32)
    stepped = Solver("epsilon", 5).step(SCHEDULE, x_t, t, t_prev, out)
    expected = ddim_step("epsilon", SCHEDULE, x_t, t, t_prev, out[..., :2])
    np.testing.assert_array_equal(stepped, expected)


def test_known_frames_enter_clean_and_land_on_x0():
    t, t_prev = hold_known_times(
        jnp.full((2, 3), 500), jnp.full((2, 3), 250), jnp.array([[True, False, False]] * 2)
    )
    np.testing.assert_array_equal(t, [[0, 500, 500]] * 2)
    np.testing.assert_array_equal(t_prev, [[-1, 250, 250]] * 2)


def test_the_walk_visits_every_step_once_in_order_with_its_key():
    seen = []

    def body(x, index, t, t_prev, key):
        jax.debug.callback(lambda *a: seen.append(tuple(int(v) for v in a)), index, t, t_prev)
        return x + jax.random.uniform(key)

    keys = jax.random.split(jax.random.key(0), 4)
    out = reverse_scan(body, jnp.float32(0.0), SCHEDULE, 4, keys)
    t_S = [int(v) for v in timestep_spacing(1000, 4)]
    assert seen == [(0, t_S[0], t_S[1]), (1, t_S[1], t_S[2]), (2, t_S[2], t_S[3]), (3, 0, -1)]
    assert t_S[0] == 999
    expected = sum(float(jax.random.uniform(k)) for k in keys)
    np.testing.assert_allclose(float(out), expected, rtol=1e-6)
