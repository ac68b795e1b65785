"""Analytic FLOP count against XLA's own count of the forward pass."""

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.models.flops import sdit_forward_flops_per_example, sdit_train_flops_per_example
from anchored_jax.models.param_count import abstract_sdit
from tests.models.sdit_testing import make_inputs, small_config


def xla_forward_flops(config, frames: int) -> float:
    """FLOPs XLA counts for one example's forward (abstract params: nothing allocated)."""
    graphdef, state = nnx.split(abstract_sdit(config))
    inputs = make_inputs(config, batch=1, frames=frames)

    def forward(state, inputs):
        return nnx.merge(graphdef, state)(**inputs)

    specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), inputs)
    analysis = jax.jit(forward).lower(state, specs).cost_analysis()
    return float(analysis["flops"])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"attention": "factorized", "identity": "embedding"},
        {"identity_tokens": True, "landmark_tokens": True},
    ],
)
def test_forward_flops_match_xla_count(overrides):
    # Wide enough that matmuls dominate; unscanned because cost analysis counts a scan
    # body once, not depth times.
    config = small_config(width=128, image_size=16, scan_layers=False, **overrides)
    ours = sdit_forward_flops_per_example(config, num_frames=4)
    xla = xla_forward_flops(config, frames=4)
    assert abs(ours / xla - 1) < 0.15, (ours, xla)


def test_train_flops_is_three_forwards_and_scales_with_frames():
    joint, factorized = small_config(), small_config(attention="factorized")
    assert sdit_train_flops_per_example(joint, 4) == 3 * sdit_forward_flops_per_example(joint, 4)
    # Joint attention is quadratic in K*N, factorized is not: at many frames it is cheaper.
    many = dict(max_frames=64)
    assert sdit_forward_flops_per_example(
        small_config(attention="factorized", **many), 64
    ) < sdit_forward_flops_per_example(small_config(**many), 64)
    assert sdit_forward_flops_per_example(factorized, 2) < sdit_forward_flops_per_example(
        factorized, 4
    )
