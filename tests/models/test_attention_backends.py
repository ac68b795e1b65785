"""Attention backends agree with the xla reference wherever they can run."""

import jax
import numpy as np
import pytest

from anchored_jax.models.attention import dot_product_attention, resolve_backend


def qkv(B=2, T=256, H=2, D=16, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((B, T, H, D), dtype=np.float32) for _ in range(3)]


@pytest.mark.parametrize("masked", [False, True])
def test_splash_kernel_in_interpret_mode_matches_xla(masked):
    q, k, v = qkv()
    mask = None
    if masked:
        mask = np.ones((2, 256), bool)
        mask[0, 192:] = False  # The last quarter of example 0's keys are padding.
    want = np.asarray(dot_product_attention(q, k, v, mask, backend="xla"))
    got = np.asarray(
        jax.jit(dot_product_attention, static_argnames="backend")(
            q, k, v, mask, backend="splash_interpret"
        )
    )
    if masked:  # Padded query rows are discarded by the model; compare the real ones.
        want, got = want[:, :192], got[:, :192]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # The reference really depends on the mask: dropping it changes example 0.
    if masked:
        unmasked = np.asarray(dot_product_attention(q, k, v, None, backend="xla"))[:, :192]
        assert np.abs(unmasked[0] - want[0]).max() > 1e-2


def test_backends_without_their_chip_fall_back_to_xla():
    if jax.default_backend() == "cpu":
        assert resolve_backend("cudnn") == "xla"
        assert resolve_backend("splash") == "xla"
    assert resolve_backend("splash_interpret") == "splash_interpret"
    with pytest.raises(ValueError, match="model.attention_backend: expected one of"):
        resolve_backend("flash3")
