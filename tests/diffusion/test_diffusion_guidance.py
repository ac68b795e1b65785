"""Compositional classifier-free guidance with a scale per condition."""

import jax
import numpy as np

from anchored_jax.diffusion import guided_output


def _outputs():
    k0, k1, k2 = jax.random.split(jax.random.key(3), 3)
    shape = (2, 3, 4, 4, 2)
    return tuple(jax.random.normal(k, shape) for k in (k0, k1, k2))


def test_unit_and_zero_scales():
    uncond, ident, full = _outputs()
    assert np.array_equal(np.asarray(guided_output(uncond, ident, full, 1.0, 1.0)), full)
    np.testing.assert_allclose(guided_output(uncond, ident, full, 0.0, 0.0), uncond, atol=1e-6)
    np.testing.assert_allclose(guided_output(uncond, ident, full, 1.0, 0.0), ident, atol=1e-6)


def test_is_linear_in_each_scale():
    uncond, ident, full = _outputs()
    got = guided_output(uncond, ident, full, 2.5, 4.0)
    expected = (
        np.asarray(uncond)
        + 2.5 * (np.asarray(ident) - np.asarray(uncond))
        + 4.0 * (np.asarray(full) - np.asarray(ident))
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Moving one scale moves the output along that condition's difference only.
    delta = guided_output(uncond, ident, full, 3.5, 4.0) - got
    np.testing.assert_allclose(delta, np.asarray(ident) - np.asarray(uncond), atol=1e-5)
