"""Scanned vs unrolled blocks and the named remat policies: same function, same gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.models.remat import REMAT_POLICIES, apply_remat
from tests.models.sdit_testing import make_inputs, new_model, run, small_config

INPUT_NAMES = ("x_BKHWC", "t_BK", "times_BK", "landmarks_BKLC", "identity")


def copy_into_unscanned(scanned, unscanned) -> None:
    """Gives `unscanned` the parameters of `scanned`, layer i <- slice i of the stack."""
    source = dict(nnx.to_flat_state(nnx.state(scanned, nnx.Param)))
    for path, var in nnx.to_flat_state(nnx.state(unscanned, nnx.Param)):
        if path[0] == "blocks":
            var.set_value(source[("blocks",) + path[2:]][...][path[1]])
        else:
            var.set_value(source[path][...])


@pytest.mark.parametrize("attention", ["joint", "factorized"])
def test_scanned_equals_unscanned(attention):
    scanned = new_model(small_config(attention=attention, depth=3))
    unscanned = new_model(small_config(attention=attention, depth=3, scan_layers=False), seed=9)
    config = scanned.config
    inputs = make_inputs(config, frames=3)
    before = run(unscanned, inputs)
    copy_into_unscanned(scanned, unscanned)
    mask = np.array([[True, True, False]] * 2)
    out_scanned = run(scanned, inputs, frame_mask_BK=mask)
    np.testing.assert_allclose(run(unscanned, inputs, frame_mask_BK=mask), out_scanned, atol=1e-5)
    # The layers really differ from one another, and the copy was needed.
    kernels = np.asarray(scanned.blocks.adaln.kernel[...])
    assert np.abs(kernels[0] - kernels[1]).max() > 1e-3
    assert np.abs(before - run(unscanned, inputs)).max() > 1e-4


@nnx.jit
def _blocks_loss_and_grads(models, x_BLD, c_BKD, frame_mask_BK):
    """Loss, output and grads (params and input) of every model's blocks, in one program.

    Remat only wraps the blocks, so they are what is compared; one jit for all policies
    keeps the compile count (the cost on CPU) at one.
    """

    def loss(model, x_BLD):
        out_BLD = model.run_blocks(x_BLD, c_BKD, frame_mask_BK)
        return jnp.mean(jnp.square(out_BLD)), out_BLD

    grad_fn = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    return {name: grad_fn(model, x_BLD) for name, model in models.items()}


def test_remat_policies_match_no_remat():
    variants = [(True, policy) for policy in REMAT_POLICIES] + [(False, "none"), (False, "full")]
    models = {
        f"{'scan' if scan else 'loop'}:{policy}": new_model(
            small_config(remat_policy=policy, scan_layers=scan)
        )
        for scan, policy in variants
    }
    rng = np.random.default_rng(0)
    x_BLD = rng.standard_normal((2, 3 * 16, 32)).astype(np.float32)
    c_BKD = rng.standard_normal((2, 3, 32)).astype(np.float32)
    mask_BK = np.array([[True, True, False], [True, True, True]])
    results = jax.tree.map(np.asarray, _blocks_loss_and_grads(models, x_BLD, c_BKD, mask_BK))

    for name, ((loss, out), (param_grads, x_grad)) in results.items():
        ref_name = name.split(":")[0] + ":none"
        (ref_loss, ref_out), (ref_param_grads, ref_x_grad) = results[ref_name]
        assert ref_loss > 0 and np.abs(ref_x_grad).max() > 1e-6
        np.testing.assert_allclose(out, ref_out, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(x_grad, ref_x_grad, atol=1e-5, err_msg=name)
        for (path, g), (_, ref_g) in zip(
            nnx.to_flat_state(param_grads), nnx.to_flat_state(ref_param_grads)
        ):
            np.testing.assert_allclose(g[...], ref_g[...], atol=1e-5, err_msg=f"{name} {path}")


def test_remat_is_applied_and_unknown_policy_is_rejected():
    def f(x):
        return jnp.sin(x) @ x

    x = jnp.ones((4, 4))
    assert "remat" in str(jax.make_jaxpr(jax.grad(lambda x: apply_remat(f, "full")(x).sum()))(x))
    assert "remat" not in str(
        jax.make_jaxpr(jax.grad(lambda x: apply_remat(f, "none")(x).sum()))(x)
    )
    with pytest.raises(ValueError, match="model.remat_policy: expected one of"):
        apply_remat(f, "everything")
