"""The KL autoencoder: SD's size, frame batching, shape checks and the identity autoencoder."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.models.autoencoder_kl import (
    AutoencoderKL,
    AutoencoderKLConfig,
    decode_frames,
    encode_frames,
    sd_vae_config,
    small_vae_config,
)


def test_sd_config_has_the_published_parameter_count_and_8x_latents():
    vae = nnx.eval_shape(lambda: AutoencoderKL(sd_vae_config(), rngs=nnx.Rngs(0)))
    count = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(vae, nnx.Param)))
    assert count == 83_653_863  # diffusers' AutoencoderKL for stabilityai/sd-vae-ft-*
    graphdef, state = nnx.split(vae)
    out = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s).encode(x),
        state,
        jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32),
    )
    assert out.shape == (1, 32, 32, 4)


def _small_vae(config=None, seed=0):
    """Random weights drawn with numpy: compiling jax's initializers dominates on CPU."""
    vae = nnx.eval_shape(lambda: AutoencoderKL(config or small_vae_config(), rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    for _, var in nnx.to_flat_state(nnx.state(vae, nnx.Param)):
        fan_in = math.prod(var.shape[:-1]) or 1
        var.set_value(jnp.asarray(rng.standard_normal(var.shape) / math.sqrt(fan_in), jnp.float32))
    return vae


def test_frames_are_encoded_as_independent_images():
    vae = _small_vae()
    clip = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16, 3)).astype(np.float32)
    latents = np.asarray(encode_frames(vae, clip))
    # The same six images as six one-frame clips: the frame axis only batches.
    singles = np.asarray(encode_frames(vae, clip.reshape(6, 1, 16, 16, 3)))
    np.testing.assert_allclose(latents.reshape(singles.shape), singles, rtol=1e-5, atol=1e-6)
    assert latents.shape == (2, 3, 8, 8, 4) and np.std(latents) > 1e-3
    decoded = np.asarray(decode_frames(vae, latents))
    decoded_singles = np.asarray(decode_frames(vae, singles))
    np.testing.assert_allclose(
        decoded.reshape(decoded_singles.shape), decoded_singles, rtol=1e-5, atol=1e-5
    )


def test_scaling_factor_scales_the_latents():
    base = small_vae_config()
    a = _small_vae(base)
    b = _small_vae(AutoencoderKLConfig(**{**base.__dict__, "scaling_factor": 1.0}))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(encode_frames(a, x)),
        0.18215 * np.asarray(encode_frames(b, x)),
        rtol=1e-5,
        atol=1e-7,
    )


def test_bad_shapes_name_the_input():
    vae = nnx.eval_shape(lambda: AutoencoderKL(small_vae_config(), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="pixels_BHWC: H and W must be multiples of 2"):
        vae.encode(jnp.zeros((1, 15, 16, 3)))
    with pytest.raises(ValueError, match=r"latents_BhwC: expected \[B, H, W, 4\]"):
        vae.decode(jnp.zeros((1, 8, 8, 3)))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="vae.norm_num_groups: 32 does not divide channels"):
        AutoencoderKLConfig(block_out_channels=(16, 32))
    with pytest.raises(ValueError, match="vae.latent_channels"):
        AutoencoderKLConfig(latent_channels=0)
