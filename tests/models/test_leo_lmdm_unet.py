"""The LMDM's 1-D temporal U-Net option: zero start, learning, LMC conditioning, config errors."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.training.leo_losses import lmdm_loss
from anchored_jax.training.tasks.lmdm import lmdm_config
from configs.lmdm import get_config

CONFIG = LmdmConfig(
    motion_dim=20, length=8, width=32, num_heads=2, architecture="unet", unet_channels=(16, 32)
)
LOSS = dict(prediction="x0", condition_dropout=0.0)


def _codes(key, b=8):
    """Smooth random code windows: a start code plus a per-sequence drift."""
    k1, k2 = jax.random.split(key)
    start_B1M = jax.random.normal(k1, (b, 1, 20))
    drift_B1M = 0.3 * jax.random.normal(k2, (b, 1, 20))
    return start_B1M + drift_B1M * jnp.arange(8.0)[None, :, None]


@pytest.fixture(scope="module")
def trained():
    """`(graphdef, params after 0, 1 and 30 Adam steps, losses)` on one fixed batch."""
    graphdef, params = nnx.split(LatentMotionDenoiser(CONFIG, rngs=nnx.Rngs(0)))
    schedule = make_schedule("cosine", 100)
    codes_BLM, key = _codes(jax.random.key(1)), jax.random.key(2)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(
            lambda p: lmdm_loss(graphdef, p, schedule, codes_BLM, key, **LOSS)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    history, opt_state, losses = [params], tx.init(params), []
    for _ in range(30):
        params, opt_state, loss = step(params, opt_state)
        history.append(params)
        losses.append(float(loss))
    return graphdef, history, losses


def _jitted(graphdef, params):
    @jax.jit
    def model(m_t, t, alpha1, drop_condition_B=None):
        return nnx.merge(graphdef, params)(m_t, t, alpha1, drop_condition_B=drop_condition_B)

    return model


def test_output_shape_and_zero_initialised_output(trained):
    graphdef, history, _ = trained
    model = _jitted(graphdef, history[0])
    m_t = jax.random.normal(jax.random.key(3), (3, 8, 20))
    out = model(
        m_t, jnp.full((3, 8), 500, jnp.int32), jax.random.normal(jax.random.key(4), (3, 20))
    )
    assert out.shape == (3, 8, 20)
    np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_adam_steps_lower_the_lmdm_loss(trained):
    _, _, losses = trained
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses


def test_alpha1_reaches_the_output_after_one_step_and_null_ignores_it(trained):
    graphdef, history, _ = trained
    model = _jitted(graphdef, history[1])
    k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
    m_t, t = jax.random.normal(k1, (2, 8, 20)), jnp.full((2, 8), 300, jnp.int32)
    a1, a2 = jax.random.normal(k2, (2, 20)), jax.random.normal(k3, (2, 20))
    out_a1, out_a2 = model(m_t, t, a1), model(m_t, t, a2)
    assert float(jnp.abs(out_a1).mean()) > 1e-4  # no longer the zero start
    assert float(jnp.abs(out_a1 - out_a2).mean()) > 1e-2 * float(jnp.abs(out_a1).mean())
    drop = jnp.array([True, False])
    dropped_a1 = model(m_t, t, a1, drop_condition_B=drop)
    dropped_a2 = model(m_t, t, a2, drop_condition_B=drop)
    np.testing.assert_allclose(dropped_a1[0], dropped_a2[0], atol=1e-6)
    np.testing.assert_allclose(dropped_a1[1], out_a1[1], atol=1e-6)


def test_config_from_json_builds_the_unet():
    """A restored run's config holds lists; the config must still be hashable (graphdef)."""
    for architecture in ("transformer", "unet"):  # the field exists in both configs
        config = get_config("tiny")
        config.model.architecture = architecture
        restored = ml_collections.ConfigDict(json.loads(config.to_json()))
        model_config = lmdm_config(restored)
        assert model_config.unet_channels == (32, 64)
        hash(model_config)
    with pytest.raises(ValueError, match=r"^lmdm\.m_t_BLM: .* multiple of 2"):
        LatentMotionDenoiser(CONFIG, rngs=nnx.Rngs(0))(
            jnp.zeros((1, 7, 20)), jnp.zeros((1, 7), jnp.int32), jnp.zeros((1, 20))
        )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(architecture="mlp"), r"^model\.architecture: expected one of"),
        (dict(length=10, unet_channels=(16, 32, 64)), r"^model\.length: expected a multiple of 4"),
        (dict(unet_channels=(12, 32)), r"^model\.unet_channels: expected .* multiples of 8"),
        (dict(unet_channels=()), r"^model\.unet_channels: expected a non-empty"),
        (dict(num_heads=3), r"^model\.num_heads: expected a divisor of model\.unet_channels"),
    ],
)
def test_bad_unet_config_is_one_line(change, message):
    kwargs = dict(motion_dim=20, length=8, width=32, num_heads=2, architecture="unet")
    with pytest.raises(ValueError, match=message) as info:
        LmdmConfig(**{**kwargs, "unet_channels": (16, 32), **change})
    assert "\n" not in str(info.value)
