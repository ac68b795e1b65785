"""Sharded training on 8 simulated CPU devices matches one device (the sDiT on four meshes, the
animator and the LMDM on data x fsdp), and a checkpoint reshards on restore."""

import jax
import ml_collections
import numpy as np
import pytest

from anchored_jax.parallel.logical_sharding import use_rules
from anchored_jax.parallel.mesh import MeshError, build_mesh
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.loop import build_setup
from anchored_jax.training.sdit_setup import make_sdit_setup
from configs import sdit

MESHES = {
    "1 device": dict(num_devices=1, ici=dict(data=1, fsdp=1, tensor=1, sequence=1)),
    "8 data": dict(num_devices=-1, ici=dict(data=8, fsdp=1, tensor=1, sequence=1)),
    "2 data x 4 fsdp": dict(num_devices=-1, ici=dict(data=2, fsdp=4, tensor=1, sequence=1)),
    "2 fsdp x 4 tensor": dict(num_devices=-1, ici=dict(data=1, fsdp=2, tensor=4, sequence=1)),
}


def small_config(mesh: dict) -> ml_collections.ConfigDict:
    config = sdit.get_config("tiny")
    config.data.clip_frames = 3
    config.model.width = 32
    config.model.depth = 2
    config.model.num_heads = 4
    config.model.patch_size = 8
    config.model.identity_channels = (8, 16, 32)
    config.training.batch_size = 8
    config.training.warmup_steps = 1
    config.mesh.num_devices = mesh["num_devices"]
    config.mesh.ici = mesh["ici"]
    return config


def random_batch(B=8, K=3, size=32, L=68, seed=0):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0, 1.5, (B, K)), axis=1).astype(np.float32)
    return dict(
        video_BKHWC=rng.uniform(-1, 1, (B, K, size, size, 3)).astype(np.float32),
        times_BK=times - times[:, :1],
        landmarks_BKLC=rng.uniform(0, 1, (B, K, L, 3)).astype(np.float32),
        identity_BHWC=rng.uniform(-1, 1, (B, size, size, 3)).astype(np.float32),
    )


def train_steps(setup, state, n, seed=0):
    losses = []
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        for i in range(n):
            batch = setup.to_device(random_batch(seed=seed + i))
            state, metrics = setup.train_step(state, batch, jax.random.key(100 + seed + i))
            losses.append(float(metrics["loss"]))
    return state, losses


def host(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


@pytest.fixture(scope="module")
def reference():
    setup = make_sdit_setup(small_config(MESHES["1 device"]))
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
    state, losses = train_steps(setup, state, 2)
    return host(state), losses


@pytest.mark.parametrize("name", [n for n in MESHES if n != "1 device"])
def test_sharded_steps_match_one_device(name, reference):
    ref_leaves, ref_losses = reference
    setup = make_sdit_setup(small_config(MESHES[name]))
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
    # Parameters really are split: some leaf lives in pieces smaller than the whole.
    shards = [x.addressable_shards[0].data.size < x.size for x in jax.tree.leaves(state.params)]
    if name != "8 data":
        assert any(shards), f"no parameter is sharded on {name}"
    state, losses = train_steps(setup, state, 2)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for got, want in zip(host(state), ref_leaves, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # two more meshes compiled; same-mesh equality stays in the default run
def test_restore_onto_a_different_mesh_continues_identically(tmp_path):
    config = small_config(MESHES["2 data x 4 fsdp"])
    save_setup = make_sdit_setup(config)
    with jax.set_mesh(save_setup.mesh), use_rules(save_setup.rules):
        state = save_setup.init_state()
    state, _ = train_steps(save_setup, state, 1)
    checkpoints = RunCheckpoints(str(tmp_path), config.checkpoint)
    checkpoints.save(1, state, None, config)
    checkpoints.wait_until_finished()
    _, continued = train_steps(save_setup, state, 1, seed=7)

    load_setup = make_sdit_setup(small_config(MESHES["2 fsdp x 4 tensor"]))
    with jax.set_mesh(load_setup.mesh), use_rules(load_setup.rules):
        restored = checkpoints.restore(1, load_setup.restore_target())
    checkpoints.close()
    kernel = restored.params["blocks"]["mlp"]["fc1"]["kernel"][...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    _, resumed = train_steps(load_setup, restored, 1, seed=7)
    np.testing.assert_allclose(resumed, continued, rtol=1e-5)


def test_mesh_that_does_not_fit_the_devices_is_one_clear_error():
    bad = ml_collections.ConfigDict(dict(num_devices=-1, ici=dict(data=3, fsdp=1, tensor=1)))
    with pytest.raises(MeshError, match=r"mesh\.ici: axes .* multiply to 3 but there are 8"):
        build_mesh(bad)
    two_unknown = ml_collections.ConfigDict(dict(ici=dict(data=-1, fsdp=-1)))
    with pytest.raises(MeshError, match="at most one axis may be -1"):
        build_mesh(two_unknown)
    inferred = build_mesh(ml_collections.ConfigDict(dict(ici=dict(data=-1, tensor=2))))
    assert dict(inferred.shape) == dict(data=4, fsdp=1, tensor=2, sequence=1)


# --- LEO's animator and LMDM run through the same loop setup: data x fsdp matches one device.
LEO_MESHES = {
    "1 device": dict(num_devices=1, ici=dict(data=1, fsdp=1, tensor=1, sequence=1)),
    "2 data x 4 fsdp": dict(num_devices=-1, ici=dict(data=2, fsdp=4, tensor=1, sequence=1)),
}


def _leo_steps(task, mesh_name, batches):
    """Losses of consecutive steps of `task` on a mesh, and the final state on the host."""
    task.config.mesh = ml_collections.ConfigDict(LEO_MESHES[mesh_name])
    setup = build_setup(task)
    losses = []
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        for i, batch in enumerate(batches):
            state, metrics = setup.train_step(state, setup.to_device(batch), jax.random.key(i))
            losses.append(float(metrics["loss"]))
    assert setup.mesh.size == (1 if mesh_name == "1 device" else 8)
    return losses, host(state)


def _compare_leo(make_task, batches):
    ref_losses, ref_state = _leo_steps(make_task(), "1 device", batches)
    losses, state = _leo_steps(make_task(), "2 data x 4 fsdp", batches)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert ref_losses[-1] != ref_losses[0]  # the steps did train
    for got, want in zip(state, ref_state, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # two compiles of the animator step; the LMDM mesh test stays in the default run
def test_animator_on_data_x_fsdp_matches_one_device():
    from anchored_jax.training.tasks.animator import AnimatorTask
    from tests.training.test_leo_animator_step import pair_batch, tiny_config

    batches = [{k: np.asarray(v) for k, v in pair_batch(B=8, seed=s).items()} for s in range(3)]
    _compare_leo(lambda: AnimatorTask(tiny_config(gan_weight=0.1)), batches)


def test_lmdm_on_data_x_fsdp_matches_one_device():
    from anchored_jax.training.tasks.lmdm import LmdmTask
    from tests.training.test_leo_lmdm import _tiny_config

    rng = np.random.default_rng(0)
    codes = np.cumsum(rng.normal(0, 0.1, (3, 16, 8, 20)), axis=2).astype(np.float32)
    # Anchored windows: the conditioning code, then 7 consecutive codes at a gap of 1 to 300.
    gaps = rng.integers(1, 300, (3, 16, 1)).astype(np.float32)
    times = np.concatenate([np.zeros_like(gaps), gaps + np.arange(7, dtype=np.float32)], axis=2)
    batches = [{"codes_BLM": c, "times_BL": t} for c, t in zip(codes, times, strict=True)]
    _compare_leo(lambda: LmdmTask(_tiny_config()), batches)
