"""The train state: one pytree of arrays, so that a step is a pure `state, batch, key -> state`.

The NNX module is split once into a static graph definition and its parameters; the step works
on the parameters alone and merges them back into a module only inside the loss.
"""

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimiser updates applied so far
    params: nnx.State
    opt_state: optax.OptState
    ema_params: nnx.State  # exponential moving average, used for evaluation and sampling
    nonfinite_streak: jax.Array  # int32: consecutive steps skipped for a non-finite loss/grad
    nonfinite_total: jax.Array  # int32: all steps skipped so far


def create_train_state(params: nnx.State, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params),
        nonfinite_streak=jnp.zeros((), jnp.int32),
        nonfinite_total=jnp.zeros((), jnp.int32),
    )


def ema_update(ema: nnx.State, params: nnx.State, decay: float) -> nnx.State:
    return jax.tree.map(lambda e, p: e * decay + p.astype(e.dtype) * (1.0 - decay), ema, params)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
    """Returns the static graph and the parameters; a module holding other state is rejected."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leftover = jax.tree.leaves(rest)
    if leftover:
        raise ValueError(
            f"{type(model).__name__} holds {len(leftover)} non-parameter variables; "
            "the train state only carries nnx.Param"
        )
    return graphdef, params


def param_count(params: nnx.State) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
