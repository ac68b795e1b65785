"""The train state: one pytree of arrays, so that a step is a pure `state, batch, key -> state`.

Every task (sDiT, LEO animator, LMDM) trains this one type. The NNX modules are split once into
static graph definitions and their parameters; a task's step works on the parameters alone and
merges them back into modules only inside its loss. The loop, not the task, advances `step`,
applies the non-finite guard and updates the EMA (`guard_and_average`), so all three get them
the same way.
"""

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimiser steps taken so far (skipped ones included)
    params: nnx.State  # or a dict of them (the animator: {"gen", "disc"})
    opt_state: optax.OptState
    ema_params: nnx.State | dict  # moving average of params; {} for a task without one
    nonfinite_streak: jax.Array  # int32: consecutive steps skipped as non-finite
    nonfinite_total: jax.Array  # int32: all steps skipped so far


def create_train_state(
    params, tx: optax.GradientTransformation | None, *, opt_state=None, with_ema: bool = True
) -> TrainState:
    """A fresh state; `opt_state` given directly for a task with several optimisers."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params) if opt_state is None else opt_state,
        ema_params=jax.tree.map(jnp.copy, params) if with_ema else {},
        nonfinite_streak=jnp.zeros((), jnp.int32),
        nonfinite_total=jnp.zeros((), jnp.int32),
    )


def ema_update(ema: nnx.State, params: nnx.State, decay: float) -> nnx.State:
    return jax.tree.map(lambda e, p: e * decay + p.astype(e.dtype) * (1.0 - decay), ema, params)


def all_finite(tree) -> jax.Array:
    """One boolean: every floating leaf of `tree` is finite (one reduction per leaf)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def guard_and_average(
    old: TrainState, new: TrainState, metrics: dict, ema_decay: float | None
) -> tuple[TrainState, dict]:
    """Advances the step; keeps `new` only if the loss, gradient, update and the new params and
    optimiser state are all finite, else keeps `old` (the batch is still consumed, so the data
    order does not change); then updates the EMA from the kept params."""
    finite = jnp.isfinite(metrics["loss"]) & all_finite((new.params, new.opt_state))
    if "grad_norm" in metrics:
        finite &= jnp.isfinite(metrics["grad_norm"])

    def keep_if_finite(fresh, stale):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), fresh, stale)

    ema = old.ema_params
    if ema_decay is not None:
        ema = keep_if_finite(ema_update(old.ema_params, new.params, ema_decay), old.ema_params)
    state = old.replace(
        step=old.step + 1,
        params=keep_if_finite(new.params, old.params),
        opt_state=keep_if_finite(new.opt_state, old.opt_state),
        ema_params=ema,
        nonfinite_streak=jnp.where(finite, 0, old.nonfinite_streak + 1),
        nonfinite_total=old.nonfinite_total + (~finite).astype(jnp.int32),
    )
    return state, {**metrics, "skipped_nonfinite": (~finite).astype(jnp.float32)}


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
