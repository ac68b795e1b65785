"""Restoring a checkpoint into a different model config lists what differs."""

import jax
import pytest

from anchored_jax.parallel.logical_sharding import use_rules
from anchored_jax.training.checkpointing import CheckpointMismatchError, RunCheckpoints
from anchored_jax.training.sdit_setup import make_sdit_setup
from tests.training.test_trainer import small_config


def test_restore_into_another_width_lists_the_differing_shapes(tmp_path):
    config = small_config(num_steps=1)
    setup = make_sdit_setup(config)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
    checkpoints = RunCheckpoints(str(tmp_path), config.checkpoint)
    checkpoints.save(1, state, None, config)
    checkpoints.wait_until_finished()

    other = small_config(num_steps=1)
    other.model.width = 48
    target = make_sdit_setup(other).restore_target()
    with pytest.raises(CheckpointMismatchError) as error:
        checkpoints.restore(1, target)
    message = str(error.value)
    assert "\n" not in message
    assert "params.blocks.mlp.fc1.kernel (2, 32, 128) vs (2, 48, 192)" in message
    # The same config restores fine, value for value.
    restored = checkpoints.restore(1, setup.restore_target())
    checkpoints.close()
    assert int(restored.step) == 0
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), restored, state))
