"""LEO animator losses: L1, the multi-scale VGG19 perceptual loss, the non-saturating GAN loss.

The perceptual loss compares VGG19 relu{1..5}_1 features of the generated and real frames on
an image pyramid (full size, then three 2x average-pooled levels), each term weighted 10 (the
LIA/FOMM recipe: 4 scales, weight 10 per term). The real frame's features are constants.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

PERCEPTUAL_SCALES = 4
PERCEPTUAL_TERM_WEIGHT = 10.0


def l1_loss(fake: jax.Array, real: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(fake.astype(jnp.float32) - real.astype(jnp.float32)))


def downsample2x(x_BHWC: jax.Array) -> jax.Array:
    B, H, W, C = x_BHWC.shape
    return x_BHWC.reshape(B, H // 2, 2, W // 2, 2, C).mean(axis=(2, 4))


def perceptual_loss(
    features_fn: Callable[[jax.Array], list[jax.Array]],
    fake_BHWC: jax.Array,
    real_BHWC: jax.Array,
    *,
    scales: int = PERCEPTUAL_SCALES,
    term_weight: float = PERCEPTUAL_TERM_WEIGHT,
) -> jax.Array:
    """Sum over pyramid levels and VGG layers of `term_weight * mean |f(fake) - f(real)|`."""
    total = jnp.zeros((), jnp.float32)
    for level in range(scales):
        if level:
            fake_BHWC, real_BHWC = downsample2x(fake_BHWC), downsample2x(real_BHWC)
        # Both images in one VGG pass: half the launches, same result.
        feats = features_fn(jnp.concatenate([fake_BHWC, real_BHWC]))
        for f in feats:
            f_fake, f_real = jnp.split(f, 2)
            total = total + term_weight * l1_loss(f_fake, jax.lax.stop_gradient(f_real))
    return total


def generator_adversarial_loss(fake_logits_B: jax.Array) -> jax.Array:
    """Non-saturating: -log sigmoid(D(fake))."""
    return jnp.mean(jax.nn.softplus(-fake_logits_B))


def discriminator_loss(real_logits_B: jax.Array, fake_logits_B: jax.Array) -> jax.Array:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake)))."""
    return jnp.mean(jax.nn.softplus(-real_logits_B)) + jnp.mean(jax.nn.softplus(fake_logits_B))


def psnr(fake: jax.Array, real: jax.Array) -> jax.Array:
    """PSNR in dB per frame for images in [-1, 1] (peak-to-peak 2)."""
    mse = jnp.mean((fake - real) ** 2, axis=tuple(range(1, fake.ndim)))
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))
