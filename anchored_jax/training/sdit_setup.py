"""Everything a sharded sDiT run needs before its first step, built once from the config.

The mesh, the logical-axis rules, the model's static graph, the optimiser, the state's
shardings, and the jitted train and eval steps with explicit in/out shardings (pjit's
semantics through `jax.jit`). The trainer, the benchmark and the tests all start here, so
they run the very same compiled step.
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchored_jax.diffusion.schedules import Schedule, make_schedule
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.parallel.logical_sharding import (
    Rules,
    batch_sharding,
    rules_from_config,
    tree_shardings,
)
from anchored_jax.parallel.mesh import build_mesh
from anchored_jax.parallel.multihost import global_batch
from anchored_jax.training.optimizer import learning_rate_schedule, make_optimizer
from anchored_jax.training.sdit_step import make_eval_step, make_train_step
from anchored_jax.training.train_state import TrainState, create_train_state, split_model

# The batch entries the model reads; ids and frame indices stay on the host.
MODEL_INPUTS = ("video_BKHWC", "times_BK", "landmarks_BKLC", "identity_BHWC")
# Rank of the identity entry per `model.identity`: a source image, a vector, a class label.
IDENTITY_RANKS = {"encoder": 4, "embedding": 2, "class_label": 1}


def model_input_ranks(model: ml_collections.ConfigDict) -> dict[str, int]:
    """The rank of each model input, batch axis included."""
    ranks = dict(video_BKHWC=5, times_BK=2, landmarks_BKLC=4)
    return {**ranks, "identity_BHWC": IDENTITY_RANKS[model.identity]}


def build_model(config: ml_collections.ConfigDict, seed: int) -> SDiT:
    return SDiT(SDiTConfig(**config.model.to_dict()), rngs=nnx.Rngs(seed))


@dataclasses.dataclass(frozen=True)
class SDiTSetup:
    config: ml_collections.ConfigDict
    mesh: Mesh
    rules: Rules
    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    schedule: Schedule
    abstract_state: TrainState
    state_shardings: TrainState
    input_shardings: dict[str, NamedSharding]
    replicated: NamedSharding
    init_fn: Callable[[], TrainState]  # builds a fresh state; traced, never run eagerly
    train_step: Callable  # (state, batch, key) -> (state, metrics), old state donated
    eval_step: Callable  # (params, batch, key) -> metrics

    def init_state(self) -> TrainState:
        """A fresh state, created directly in its shardings (never whole on one device)."""
        return jax.jit(self.init_fn, out_shardings=self.state_shardings)()

    def restore_target(self) -> TrainState:
        """Shape, dtype and sharding of every leaf: what orbax restores (and reshards) onto."""
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            self.abstract_state,
            self.state_shardings,
        )

    def to_device(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's slice of a batch -> global arrays sharded over the batch axes."""
        return global_batch({k: batch[k] for k in MODEL_INPUTS}, self.input_shardings)


def make_sdit_setup(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> SDiTSetup:
    mesh = build_mesh(config.mesh) if mesh is None else mesh
    rules = rules_from_config(config.sharding.rules)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    tx = make_optimizer(config.training)
    graphdef, _ = split_model(nnx.eval_shape(lambda: build_model(config, config.seed)))

    def init() -> TrainState:
        return create_train_state(split_model(build_model(config, config.seed))[1], tx)

    abstract_state = jax.eval_shape(init)
    state_shardings = tree_shardings(abstract_state, rules, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    input_shardings = {
        name: batch_sharding(mesh, rules, ndim)
        for name, ndim in model_input_ranks(config.model).items()
    }
    train_step = jax.jit(
        make_train_step(graphdef, tx, schedule, config, learning_rate_schedule(config.training)),
        in_shardings=(state_shardings, input_shardings, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )
    eval_step = jax.jit(
        make_eval_step(graphdef, schedule, config),
        in_shardings=(state_shardings.params, input_shardings, replicated),
        out_shardings=replicated,
    )
    return SDiTSetup(
        config=config,
        mesh=mesh,
        rules=rules,
        graphdef=graphdef,
        tx=tx,
        schedule=schedule,
        abstract_state=abstract_state,
        state_shardings=state_shardings,
        input_shardings=input_shardings,
        replicated=replicated,
        init_fn=init,
        train_step=train_step,
        eval_step=eval_step,
    )
