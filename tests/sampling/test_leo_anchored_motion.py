"""The anchored LMDM: segments share the anchor code, equal direct samples, split freely."""

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.sampling.leo_anchored_motion import (
    anchored_motion,
    join_statistics,
    motion_plan,
)
from anchored_jax.sampling.leo_motion_generation import sample_motion, sample_offsets
from anchored_jax.sampling.video_generation import sampler_mesh

L, M = 6, 8
CONFIG = LmdmConfig(motion_dim=M, length=L, width=32, depth=1, num_heads=2)
SCHEDULE = make_schedule("cosine", 100)
KW = dict(length=L, num_steps=4, prediction="x0")


@pytest.fixture(scope="module")
def model():
    """A denoiser with a random output layer (the trained one starts at 0)."""
    lmdm = LatentMotionDenoiser(CONFIG, rngs=nnx.Rngs(0))
    lmdm.out.kernel[...] = 0.3 * jax.random.normal(jax.random.key(1), lmdm.out.kernel.shape)
    return nnx.split(lmdm)


def test_one_segment_is_the_first_frame_conditioned_sample(model):
    graphdef, params = model
    alpha1 = jax.random.normal(jax.random.key(2), (2, M)) * 3.0
    key = jax.random.key(3)
    anchored = anchored_motion(graphdef, params, SCHEDULE, alpha1, key, num_frames=L, **KW)
    direct = sample_motion(graphdef, params, SCHEDULE, alpha1, key, **KW)
    np.testing.assert_allclose(anchored, direct, atol=1e-5)


def test_segments_share_the_anchor_and_equal_direct_samples(model):
    graphdef, params = model
    T = 23  # 22 steps after the anchor in blocks of 5: 5 segments, the last one padded
    plan = motion_plan(T, L)
    S = plan.num_segments
    assert S == 5
    alpha1 = jax.random.normal(jax.random.key(4), (2, M)) * 3.0
    key = jax.random.key(5)
    steps = []
    out = anchored_motion(
        graphdef, params, SCHEDULE, alpha1, key, num_frames=T, chunk_size=2,
        progress=steps.append, **KW,
    )  # fmt: skip
    assert out.shape == (2, T, M) and steps == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.asarray(out[:, 0]), np.asarray(alpha1))
    # Every segment is a sample from the same anchor: the same offsets sample_offsets draws
    # for a batch of B*S first codes from the same noise (chunks of 2 segments or one batch).
    noise_key_for_batch = key  # anchored_motion draws [B, S, L, M] noise from `key`
    offsets = sample_offsets(
        graphdef, params, SCHEDULE, np.repeat(alpha1, S, axis=0), noise_key_for_batch, **KW
    )
    codes = np.asarray(offsets).reshape(2, S, L, M) + np.asarray(alpha1)[:, None, None]
    expected = np.zeros((2, T, M), np.float32)
    expected[:, 0] = alpha1
    expected[:, plan.frame_index_SK[plan.owned_SK]] = codes[:, plan.owned_SK]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # The anchor code is slot 0 of every segment: exactly alpha_1, with offset exactly 0.
    np.testing.assert_array_equal(np.asarray(offsets[:, 0]), 0.0)


@pytest.mark.slow  # the default run covers the mesh path in tests/launch/test_leo_generate_cli.py
def test_sharded_over_devices_equals_one_device(model):
    graphdef, params = model
    T = 31  # 6 segments per sequence, 12 in all, over 8 devices (padding)
    alpha1 = jax.random.normal(jax.random.key(6), (2, M)) * 3.0
    key = jax.random.key(7)
    one = anchored_motion(graphdef, params, SCHEDULE, alpha1, key, num_frames=T, **KW)
    mesh = sampler_mesh(0, 12)
    assert mesh is not None and mesh.size == 8
    split = anchored_motion(graphdef, params, SCHEDULE, alpha1, key, num_frames=T, mesh=mesh, **KW)
    np.testing.assert_allclose(split, one, atol=1e-5)


def test_join_statistics_reference_values():
    alpha = np.zeros((1, 9, 1))
    alpha[0, :, 0] = [0, 1, 2, 3, 1, 2, 3, 1, 2]  # blocks of 3 after step 0 (L = 4)
    stats = join_statistics(alpha, length=4)
    assert stats["join_delta_mean"] == pytest.approx(2.0)  # steps 3 -> 4 and 6 -> 7
    assert stats["within_delta_mean"] == pytest.approx(1.0)
