"""The LMDM's train step and loop: writers, model and optimiser, restore, loop, checkpoints.

A batch is windows of L motion codes. Each becomes offsets m = alpha - alpha_1 (m at step 0 is
0 and enters clean at t = 0, as the sampler holds it), noised at one timestep per sequence and
denoised given alpha_1 (dropped to the learned null for `condition_dropout` of the examples).
The grain iterator is checkpointed with the state, so a resumed run repeats an uninterrupted
one. Like the animator loop, this never imports the data pipelines.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from flax import nnx, struct

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.training.checkpointing import RunCheckpoints, abstract_like
from anchored_jax.training.leo_losses import lmdm_loss
from anchored_jax.training.optimizer import make_optimizer
from anchored_jax.training.train_state import param_count, split_model
from anchored_jax.training.trainer import PreemptionFlag, close_run, save_if_due


@struct.dataclass
class LmdmState:
    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    ema_params: nnx.State


def lmdm_config(config: ml_collections.ConfigDict) -> LmdmConfig:
    return LmdmConfig(**config.model.to_dict())


def init_lmdm(config: ml_collections.ConfigDict, seed: int):
    """`(graphdef, tx, state)`: a fresh denoiser from `seed` and its optimiser."""
    graphdef, params = split_model(LatentMotionDenoiser(lmdm_config(config), rngs=nnx.Rngs(seed)))
    tx = make_optimizer(config.training)
    state = LmdmState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params),
    )
    return graphdef, tx, state


def make_train_step(graphdef, tx, schedule, config: ml_collections.ConfigDict):
    prediction = config.diffusion.prediction
    dropout = config.diffusion.condition_dropout
    ema_decay = config.training.ema_decay

    @jax.jit
    def train_step(state: LmdmState, batch, key):
        def loss_fn(params):
            return lmdm_loss(
                graphdef,
                params,
                schedule,
                batch["codes_BLM"],
                key,
                prediction=prediction,
                condition_dropout=dropout,
                times_BL=batch.get("times_BL"),
            )

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(
            lambda e, p: ema_decay * e + (1 - ema_decay) * p, state.ema_params, params
        )
        new_state = LmdmState(
            step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema
        )
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step


def train_lmdm(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_iter: Iterator,
    stop_at_step: int | None = None,
) -> dict:
    """Trains (or resumes) to `num_steps` or `stop_at_step`; returns the summary with the final
    `graphdef`, `ema_params` and `schedule` for the caller's evaluation."""
    is_main = jax.process_index() == 0
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    graphdef, tx, state = init_lmdm(config, config.seed)

    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    latest = checkpoints.latest_step()
    if latest is not None:
        logging.info("Resuming from %s at step %d.", checkpoints.directory, latest)
        state = checkpoints.restore(latest, abstract_like(state), train_iter)
    else:
        writer.write_hparams({"lmdm_params": param_count(state.params)})

    train_step = make_train_step(graphdef, tx, schedule, config)
    num_steps = config.training.num_steps
    end = num_steps if stop_at_step is None else min(num_steps, stop_at_step)
    base_key = jax.random.key(config.seed + 1)
    step = int(state.step)
    losses, first_loss, last_loss = [], None, None
    report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    with PreemptionFlag() as preempted:
        while step < end:
            batch = next(train_iter)
            batch = {k: jnp.asarray(v) for k, v in batch.items()}
            state, metrics = train_step(state, batch, jax.random.fold_in(base_key, step))
            step += 1
            report_progress(step)
            losses.append(metrics["loss"])
            if step % config.logging.log_every_steps == 0 or step == end:
                mean_loss = float(np.mean(jax.device_get(losses)))
                first_loss = mean_loss if first_loss is None else first_loss
                last_loss = mean_loss
                writer.write_scalars(step, {"train_loss": mean_loss})
                losses = []
            if save_if_due(checkpoints, preempted, step, end, state, train_iter, config):
                break
    close_run(checkpoints, writer)
    return {
        "step": step,
        "first_logged_loss": first_loss,
        "final_loss": last_loss,
        "graphdef": graphdef,
        "ema_params": state.ema_params,
        "params": state.params,
        "schedule": schedule,
    }
