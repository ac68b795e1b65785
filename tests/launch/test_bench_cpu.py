"""`benchmark cpu` finds every matmul the train step runs, counted as often as it runs."""

import jax
import jax.numpy as jnp
import numpy as np

from anchored_jax.evaluation.step_timing import StepProgram, random_batch
from configs import sdit as sdit_config
from launch.bench_cpu import make_dit_equivalent, step_dots, time_step_dots


def _scanned_layers_grad(m=16, k=8, depth=3):
    """Gradient of a depth-layer scanned matmul stack: 3 dots per layer (forward, dx, dw)."""

    def loss(ws, x):
        def layer(h, w):
            return jnp.tanh(h @ w), None

        h, _ = jax.lax.scan(layer, x, ws)
        return jnp.sum(h)

    ws = jnp.ones((depth, k, k)) * 0.1
    x = jnp.ones((m, k))
    return jax.jit(jax.grad(loss)).trace(ws, x).jaxpr


def test_scan_body_dots_count_once_per_layer():
    m, k, depth = 16, 8, 3
    dots = step_dots(_scanned_layers_grad(m, k, depth))
    assert sum(dots.values()) == 3 * depth
    assert all(n == depth for n in dots.values())
    assert sum(n * dot.flops for dot, n in dots.items()) == 3 * depth * 2 * m * k * k
    out_shapes = sorted(dot.out for dot in dots)
    assert out_shapes == sorted([(m, k), (m, k), (k, k)])


def test_timed_dots_cover_the_same_calls():
    rows = time_step_dots(_scanned_layers_grad(), repeats=1)
    assert sum(n for _, n, _ in rows) == 9
    assert all(seconds > 0 for _, _, seconds in rows)
    totals = [n * seconds for _, n, seconds in rows]
    assert totals == sorted(totals, reverse=True)


def test_sdit_step_dots_match_the_analytic_flop_count():
    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.models.sdit_config import SDiTConfig
    from anchored_jax.parallel.logical_sharding import use_rules
    from anchored_jax.training.sdit_setup import make_sdit_setup

    config = sdit_config.get_config("S")
    make_dit_equivalent(config, batch_size=2)
    config.model.update(width=64, depth=2, num_heads=2)  # DiT-S's layout, narrow and shallow
    setup = make_sdit_setup(config)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        batch = setup.to_device(random_batch(config, 2, np.random.default_rng(0)))
        jaxpr = StepProgram(setup.train_step).trace(state, batch, jax.random.key(0)).jaxpr
    dots = step_dots(jaxpr)
    model = SDiTConfig(**config.model.to_dict())
    analytic = 2 * sdit_train_flops_per_example(model, 1)
    found = sum(n * dot.flops for dot, n in dots.items())
    # Each block's dots run `depth` times through the scan. The analytic count takes the
    # backward pass as twice the forward; the traced step skips the few gradients nothing
    # needs, such as the one into the noisy input.
    assert max(dots.values()) == model.depth
    assert abs(found / analytic - 1) < 0.01, (found, analytic)
