"""The LMDM denoiser: the LMC (codes = m + alpha_1), conditioning, null condition, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import (
    LatentMotionDenoiser,
    LmdmConfig,
    codes_from_offsets,
    offsets_from_codes,
)
from anchored_jax.sampling.leo_motion_generation import (
    chain_motion,
    delta_statistics,
    sample_motion,
    sample_offsets,
)

CONFIG = LmdmConfig(motion_dim=20, length=6, width=32, depth=1, num_heads=2)


def _model(seed=0):
    """A denoiser whose zero-initialised output layer is replaced by a random one, so that
    its output depends on every input (an untrained model would always predict 0)."""
    model = LatentMotionDenoiser(CONFIG, rngs=nnx.Rngs(seed))
    key = jax.random.key(seed + 100)
    model.out.kernel[...] = 0.3 * jax.random.normal(key, model.out.kernel.shape)
    return model


def test_codes_and_offsets_invert_each_other():
    alpha_BLM = jax.random.normal(jax.random.key(0), (3, 6, 20)) * 4.0
    m_BLM, alpha1_BM = offsets_from_codes(alpha_BLM)
    np.testing.assert_array_equal(np.asarray(m_BLM[:, 0]), 0.0)
    np.testing.assert_allclose(codes_from_offsets(m_BLM, alpha1_BM), alpha_BLM, atol=1e-6)


def test_condition_and_timestep_change_the_output_and_null_ignores_alpha1():
    graphdef, params = nnx.split(_model())

    @jax.jit
    def model(m_t, t, alpha1, drop_condition_B=None):
        return nnx.merge(graphdef, params)(m_t, t, alpha1, drop_condition_B=drop_condition_B)

    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    m_t = jax.random.normal(k1, (2, 6, 20))
    t = jnp.full((2, 6), 500, jnp.int32)
    a1, a2 = jax.random.normal(k2, (2, 20)), jax.random.normal(k3, (2, 20))
    out_a1, out_a2 = model(m_t, t, a1), model(m_t, t, a2)
    assert float(jnp.abs(out_a1 - out_a2).mean()) > 1e-2  # the LMC reaches the output
    assert float(jnp.abs(out_a1 - model(m_t, t + 300, a1)).mean()) > 1e-2
    drop = jnp.ones((2,), bool)
    np.testing.assert_allclose(
        model(m_t, t, a1, drop_condition_B=drop), model(m_t, t, a2, drop_condition_B=drop)
    )
    # Dropping only example 0 leaves example 1 as conditioned.
    mixed = model(m_t, t, a1, drop_condition_B=jnp.array([True, False]))
    np.testing.assert_allclose(mixed[1], out_a1[1], atol=1e-5)
    assert float(jnp.abs(mixed[0] - out_a1[0]).mean()) > 1e-2


def test_window_gap_reaches_the_output_and_defaults_to_consecutive():
    graphdef, params = nnx.split(_model())
    model = nnx.merge(graphdef, params)
    m_t = jax.random.normal(jax.random.key(6), (2, 6, 20))
    t = jnp.full((2, 6), 400, jnp.int32)
    alpha1 = jax.random.normal(jax.random.key(7), (2, 20))
    consecutive = jnp.ones((2,))
    np.testing.assert_allclose(
        model(m_t, t, alpha1), model(m_t, t, alpha1, gap_B=consecutive), atol=1e-6
    )
    far = jnp.full((2,), 300.0)  # the same window, 300 frames after alpha_1
    assert float(jnp.abs(model(m_t, t, alpha1, gap_B=far) - model(m_t, t, alpha1)).mean()) > 1e-2
    # Without frame times the model has no gap parameters.
    fixed = LatentMotionDenoiser(
        LmdmConfig(motion_dim=20, length=6, width=32, depth=1, num_heads=2, frame_times=False),
        rngs=nnx.Rngs(0),
    )
    assert not hasattr(fixed, "time_fc1")


def test_sampled_codes_are_offsets_plus_first_code():
    graphdef, params = nnx.split(_model())
    schedule = make_schedule("cosine", 100)
    alpha1 = jax.random.normal(jax.random.key(2), (3, 20)) * 3.0
    key = jax.random.key(3)
    kw = dict(length=6, num_steps=5, prediction="x0")
    codes = sample_motion(graphdef, params, schedule, alpha1, key, **kw)
    offsets = sample_offsets(graphdef, params, schedule, alpha1, key, **kw)
    np.testing.assert_array_equal(np.asarray(codes[:, 0]), np.asarray(alpha1))
    np.testing.assert_allclose(codes, offsets + alpha1[:, None], atol=1e-5)
    assert float(jnp.abs(offsets[:, 1:]).mean()) > 1e-2
    # Conditioning changes the generated motion; the unconditional sampler ignores alpha_1.
    other = (
        sample_motion(graphdef, params, schedule, alpha1 + 1.0, key, **kw) - (alpha1 + 1.0)[:, None]
    )
    assert float(jnp.abs(other - offsets).mean()) > 1e-3
    unc = [
        sample_motion(graphdef, params, schedule, a, key, unconditional=True, **kw) - a[:, None]
        for a in (alpha1, alpha1 + 1.0)
    ]
    np.testing.assert_allclose(unc[0], unc[1], atol=1e-5)


def test_chain_continues_each_chunk_from_the_last_code():
    graphdef, params = nnx.split(_model())
    schedule = make_schedule("cosine", 100)
    alpha1 = jax.random.normal(jax.random.key(4), (2, 20))
    key = jax.random.key(5)
    chained = chain_motion(
        graphdef,
        params,
        schedule,
        alpha1,
        key,
        num_frames=21,
        length=6,
        num_steps=4,
        prediction="x0",
    )
    assert chained.shape == (2, 21, 20)
    np.testing.assert_array_equal(np.asarray(chained[:, 0]), np.asarray(alpha1))
    # Chunk 0 is exactly the first-frame-conditioned sample with the scan's first key.
    first = sample_motion(
        graphdef,
        params,
        schedule,
        alpha1,
        jax.random.split(key, 4)[0],
        length=6,
        num_steps=4,
        prediction="x0",
    )
    np.testing.assert_allclose(chained[:, :6], first, atol=1e-5)


def test_delta_statistics_reference_values():
    alpha = np.zeros((1, 4, 2))
    alpha[0, :, 0] = [0.0, 1.0, 3.0, 3.0]  # |deltas| 1, 2, 0 and three zeros on axis 1
    stats = delta_statistics(alpha)
    assert stats["delta_mean"] == pytest.approx(0.5)
    assert stats["delta_std"] == pytest.approx(np.std([1, 2, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("width", 30, "model.num_heads"),
        ("length", 1, "model.length"),
        ("depth", 0, "model.depth"),
        ("frame_times", 1, "model.frame_times"),
        ("time_period", 0.0, "model.time_period"),
    ],
)
def test_bad_config_names_the_field(field, value, expected):
    kwargs = dict(motion_dim=20, length=6, width=32, depth=1, num_heads=4)
    kwargs[field] = value
    with pytest.raises(ValueError, match=expected):
        LmdmConfig(**kwargs)
