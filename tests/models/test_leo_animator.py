"""LEO's animator: LIA's exact parameter counts, the orthonormal motion dictionary, and the
StyleGAN2 layers against independent references (numpy, and torch where installed)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_discriminator import LeoDiscriminator, minibatch_stddev
from anchored_jax.models.leo_generator import (
    LeoGenerator,
    MotionDictionary,
    grid_sample,
)
from anchored_jax.models.leo_stylegan_layers import ModulatedConv2d, upfirdn2d
from anchored_jax.models.param_count import count_params

TINY = AnimatorConfig(image_size=32, style_dim=32, motion_dim=4, channel_base=256, max_channels=16)


def test_parameter_counts_match_lia_at_256():
    config = AnimatorConfig()
    gen = nnx.eval_shape(lambda: LeoGenerator(config, rngs=nnx.Rngs(0)))
    disc = nnx.eval_shape(lambda: LeoDiscriminator(config, rngs=nnx.Rngs(0)))
    # LIA's published sizes: generator 45.1M, discriminator 24.0M.
    assert count_params(gen) == 45_116_317
    assert count_params(disc) == 24_001_089
    assert round(count_params(gen) / 1e6, 1) == 45.1
    assert round(count_params(disc) / 1e6, 1) == 24.0
    # The split: encoder (appearance + motion MLP) and decoder.
    assert count_params(gen.enc.fc) == 4 * (512 * 512 + 512) + 512 * 20 + 20


def test_motion_dictionary_is_orthonormal_on_every_call():
    d = MotionDictionary(512, 20, rngs=nnx.Rngs(0))
    q = d.basis()
    np.testing.assert_allclose(q.T @ q, np.eye(20), atol=2e-5)
    # After an arbitrary update of W, Q is still orthonormal and spans the new W.
    d.weight[...] = d.weight[...] * jnp.linspace(0.1, 5.0, 20) + 3.0
    q = d.basis()
    np.testing.assert_allclose(q.T @ q, np.eye(20), atol=2e-5)
    w = np.asarray(d.weight[...])
    np.testing.assert_allclose(q @ (q.T @ w), w, rtol=1e-4, atol=1e-3)
    alpha = jax.random.normal(jax.random.key(1), (3, 20))
    np.testing.assert_allclose(d(alpha), alpha @ q.T, atol=1e-5)


def _upfirdn_reference(x, k2, up, down, pad):
    """Direct numpy upfirdn2d on one channel: zero insertion, pad, true convolution, stride."""
    H, W = x.shape
    u = np.zeros((H * up, W * up))
    u[::up, ::up] = x
    u = np.pad(u, [pad, pad])
    kh = k2.shape[0]
    out = np.zeros((u.shape[0] - kh + 1, u.shape[1] - kh + 1))
    kf = k2[::-1, ::-1]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(u[i : i + kh, j : j + kh] * kf)
    return out[::down, ::down]


@pytest.mark.parametrize("up, down, pad, gain", [(1, 2, (2, 2), 1.0), (2, 1, (2, 1), 4.0)])
def test_upfirdn2d_matches_direct_reference(up, down, pad, gain):
    x = np.random.default_rng(0).normal(size=(1, 9, 9, 2)).astype(np.float32)
    taps = np.array([1.0, 2.0, 5.0, 1.0])  # asymmetric: catches a missing flip
    k2 = np.outer(taps, taps) / taps.sum() ** 2 * gain
    got = upfirdn2d(jnp.asarray(x), gain=gain, up=up, down=down, pad=pad, taps=taps)
    for c in range(2):
        want = _upfirdn_reference(x[0, :, :, c], k2, up, down, pad)
        np.testing.assert_allclose(got[0, :, :, c], want, rtol=1e-5, atol=1e-5)


def test_grid_sample_identity_and_shift():
    feat = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
    H, W = 6, 8
    # Pixel centres under align_corners=False: x = (2j + 1) / W - 1.
    xs = (2 * np.arange(W) + 1) / W - 1
    ys = (2 * np.arange(H) + 1) / H - 1
    centres = np.stack(np.meshgrid(xs, ys), -1)[None].repeat(2, 0)
    np.testing.assert_allclose(grid_sample(feat, jnp.asarray(centres)), feat, atol=1e-5)
    # Half a pixel to the right is the mean of horizontal neighbours; past the edge, zeros.
    shifted = centres.copy()
    shifted[..., 0] += 1.0 / W
    got = np.asarray(grid_sample(feat, jnp.asarray(shifted)))
    f = np.asarray(feat)
    np.testing.assert_allclose(got[:, :, :-1], (f[:, :, :-1] + f[:, :, 1:]) / 2, atol=1e-5)
    np.testing.assert_allclose(got[:, :, -1], f[:, :, -1] / 2, atol=1e-5)


def test_grid_sample_matches_torch():
    torch = pytest.importorskip("torch")
    feat = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
    grid = np.random.default_rng(2).uniform(-1.2, 1.2, size=(2, 4, 6, 2)).astype(np.float32)
    want = torch.nn.functional.grid_sample(
        torch.from_numpy(feat).permute(0, 3, 1, 2), torch.from_numpy(grid), align_corners=False
    )
    got = grid_sample(jnp.asarray(feat), jnp.asarray(grid))
    np.testing.assert_allclose(got, want.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_modulated_conv_equals_per_sample_weights():
    """StyleGAN2's definition: w'_bo = s_b * w / ||s_b * w||, one conv per sample."""
    m = ModulatedConv2d(4, 5, 3, 6, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 7, 7, 4))
    style = jax.random.normal(jax.random.key(2), (2, 6))
    got = m(x, style)
    s = np.asarray(m.modulation(style))
    w = np.asarray(m.weight[...]) * m.scale
    for b in range(2):
        wb = w * s[b][None, None, :, None]
        wb = wb / np.sqrt((wb**2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        want = jax.lax.conv_general_dilated(
            x[b : b + 1], wb, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        np.testing.assert_allclose(got[b : b + 1], want, rtol=1e-4, atol=1e-4)


def test_upsampling_modulated_conv_matches_torch_transposed_conv():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    m = ModulatedConv2d(3, 2, 3, 4, upsample=True, demodulate=False, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 3)).astype(np.float32)
    style = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
    got = np.asarray(m(jnp.asarray(x), jnp.asarray(style)))
    s = np.asarray(m.modulation(jnp.asarray(style)))[0]
    w_io = np.asarray(m.weight[...]).transpose(2, 3, 0, 1) * m.scale * s[:, None, None, None]
    y = F.conv_transpose2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w_io.copy()), stride=2
    )
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k2 = (k[:, None] * k[None, :]) / 64.0 * 4.0
    y = F.pad(y, (1, 1, 1, 1))
    y = F.conv2d(y.reshape(-1, 1, *y.shape[2:]), k2[None, None]).reshape(1, 2, 10, 10)
    np.testing.assert_allclose(got, y.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)


def test_relative_mode_is_motion_difference_on_source_pose():
    gen = LeoGenerator(TINY, rngs=nnx.Rngs(0))
    z = jax.random.normal(jax.random.key(0), (2, 32))
    a_d, a_0, a_s = (jax.random.normal(jax.random.key(i), (2, 4)) for i in (1, 2, 3))
    rel = gen.target_latent(z, a_d, alpha_start_BM=a_0, alpha_source_BM=a_s)
    q = gen.dec.direction.basis()
    np.testing.assert_allclose(rel, z + (a_d - a_0 + a_s) @ q.T, atol=1e-5)
    # The driving video's first frame leaves the source exactly as itself encoded.
    same = gen.target_latent(z, a_0, alpha_start_BM=a_0, alpha_source_BM=a_s)
    np.testing.assert_allclose(same, gen.target_latent(z, a_s), atol=1e-5)


@pytest.mark.slow  # runs in make test-all; keeps the default run near 10 minutes
def test_generator_renders_driving_dependent_frames():
    gen = LeoGenerator(TINY, rngs=nnx.Rngs(0))
    src = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1, maxval=1)
    drv = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)
    out_a, out_b = gen(src, drv), gen(src, src)
    assert out_a.shape == (2, 32, 32, 3)
    assert np.isfinite(np.asarray(out_a)).all()
    assert float(jnp.abs(out_a - out_b).mean()) > 1e-4  # the motion code matters
    z, feats, alpha = gen.encode(src)
    assert [f.shape[1] for f in feats] == [8, 16, 32] and alpha.shape == (2, 4)


def test_minibatch_stddev_channel():
    x = jnp.arange(8 * 2 * 2 * 3, dtype=jnp.float32).reshape(8, 2, 2, 3)
    out = minibatch_stddev(x)
    # Groups of 4 frames: frame b is grouped with b +- 2 and b +- 4 (stride B/4 = 2).
    std = np.std(np.asarray(x).reshape(4, 2, 2, 2, 3), axis=0).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out[:, 0, 0, 3], np.tile(std, 4), rtol=1e-5)
    assert math.isclose(float(out[0, 1, 1, 3]), float(out[0, 0, 0, 3]))
