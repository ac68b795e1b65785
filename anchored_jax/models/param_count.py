"""Parameter counts of an sDiT, whole or trunk only (the part that is DiT's).

The trunk count is what the tests hold against DiT's published sizes, so the
conditioning modules we add (frame time, landmarks, identity, nulls) can be excluded.
"""

import math

from flax import nnx

from anchored_jax.models.sdit import CONDITIONING_ATTRS, SDiT
from anchored_jax.models.sdit_config import SDiTConfig


def count_params(model_or_state, exclude_conditioning: bool = False) -> int:
    """Number of scalars in the `nnx.Param`s of a model (or of its `nnx.state`).

    Works on abstract models from `nnx.eval_shape` too, since only shapes are read.
    """
    if isinstance(model_or_state, nnx.Module):
        state = nnx.state(model_or_state, nnx.Param)
    else:
        state = nnx.filter_state(model_or_state, nnx.Param)
    total = 0
    for path, leaf in nnx.to_flat_state(state):
        if exclude_conditioning and path[0] in CONDITIONING_ATTRS:
            continue
        total += math.prod(leaf.shape)
    return total


def abstract_sdit(config: SDiTConfig) -> SDiT:
    """An SDiT with shapes only: no memory allocated, any size."""
    return nnx.eval_shape(lambda: SDiT(config, rngs=nnx.Rngs(0)))
