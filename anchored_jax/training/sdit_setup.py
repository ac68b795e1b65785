"""The sDiT compiled for a mesh, outside the loop: what the benchmarks and tests step directly.

`make_sdit_setup` is the loop's own `build_setup` applied to the sDiT task, so a benchmark
runs the very same jitted step (shardings, donation, non-finite guard, EMA) as training.
"""

import ml_collections
from jax.sharding import Mesh

from anchored_jax.training.loop import TaskSetup, build_setup
from anchored_jax.training.tasks.sdit import (
    IDENTITY_RANKS,
    MODEL_INPUTS,
    SDiTTask,
    build_model,
    model_input_ranks,
)

__all__ = [
    "IDENTITY_RANKS",
    "MODEL_INPUTS",
    "build_model",
    "make_sdit_setup",
    "model_input_ranks",
]


def make_sdit_setup(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> TaskSetup:
    return build_setup(SDiTTask(config, validate=False), mesh)
