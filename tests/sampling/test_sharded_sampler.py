"""The anchored sampler on a mesh of 8 simulated devices returns the single-device video."""

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.diffusion import make_schedule
from anchored_jax.models.sdit import SDiT
from anchored_jax.parallel.mesh import sampler_mesh
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.sampling.video_generation import generate_video
from anchored_jax.training.train_state import split_model
from tests.models.sdit_testing import small_config

SCHEDULE = make_schedule("linear", 1000)
# 14 frames in segments of 3 new frames: 5 segments, which 8 devices split unevenly (padding).
T, K = 14, 4


@pytest.fixture(scope="module")
def parts():
    graphdef, params = split_model(SDiT(small_config(num_landmarks=5), rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    leaves, treedef = jax.tree.flatten(params)
    leaves = [x + 0.2 * rng.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    params = jax.tree.unflatten(treedef, leaves)
    source = rng.uniform(-0.8, 0.8, (8, 8, 3)).astype(np.float32)
    driving = dict(
        landmarks_TLC=rng.uniform(0.2, 0.8, (T, 5, 3)).astype(np.float32),
        frame_times_T=np.sort(rng.uniform(0, 2.0, T)) - 0.0,
    )
    return graphdef, params, source, driving


def _video(parts, settings, mesh, plan_kind="contiguous"):
    graphdef, params, source, driving = parts
    video, segments = generate_video(
        graphdef, params, SCHEDULE, prediction="v",
        plan=plan_segments(T, K, 0, plan_kind, seed=3), identity=source, source_HWC=source,
        settings=settings, key=jax.random.key(7), mesh=mesh, **driving,
    )  # fmt: skip
    return video, segments


def test_sampler_mesh_uses_at_most_one_device_per_segment():
    assert jax.device_count() == 8
    assert sampler_mesh(0, 5).size == 5
    assert sampler_mesh(3, 5).size == 3
    assert sampler_mesh(0, 1) is None and sampler_mesh(1, 5) is None
    assert sampler_mesh(-1, 6).size == 6  # -1 = all, as mesh.num_devices says in configs
    with pytest.raises(ValueError, match=r"^mesh.num_devices: expected -1 or 0 \(all\) to 8"):
        sampler_mesh(9, 5)


@pytest.mark.parametrize(
    "settings,plan_kind",
    [
        # generated anchor: the mean over segments becomes a cross-device psum
        (SamplerSettings(anchor="generated", num_steps=4, chunk_size=1), "random"),
        # DDPM draws per-segment noise every step: the split must not change it
        (SamplerSettings(anchor="generated", sampler="ddpm", num_steps=3), "strided"),
        (SamplerSettings(known_anchor_mode="renoise", num_steps=3, eta=0.5), "contiguous"),
        (SamplerSettings(method="independent", num_steps=3), "contiguous"),
    ],
    ids=["generated", "ddpm", "renoise-eta", "independent"],
)
def test_eight_devices_give_the_single_device_video(parts, settings, plan_kind):
    one, _ = _video(parts, settings, None, plan_kind)
    mesh = sampler_mesh(8, 5)
    assert mesh.size == 5
    sharded, segments = _video(parts, settings, mesh, plan_kind)
    # Only float rounding differs between the two (the anchor sum's addition order, batch
    # shapes), which the perturbed model amplifies over the steps to ~1e-4 at worst.
    np.testing.assert_allclose(sharded, one, rtol=0, atol=2e-4)
    assert np.abs(sharded - one).mean() < 1e-6
    assert np.abs(one).mean() > 0.1  # a real video, not zeros
    if settings.method == "anchored" and settings.anchor == "generated":
        assert np.all(segments[:, 0] == segments[0, 0])  # still bit-identical across devices
