"""LEO's Latent Motion Diffusion Model (phase 2) as a task of the training loop.

A batch is windows of L motion codes. Each becomes offsets m = alpha - alpha_1 (m at step 0 is
0 and enters clean at t = 0, as the sampler holds it), noised at one timestep per sequence and
denoised given alpha_1 (dropped to the learned null for `condition_dropout` of the examples).
The evaluation, at the last step only, compares the EMA model's first-frame-conditioned
samples with held-out real windows by per-step delta statistics (mean and std of
|alpha_{t+1} - alpha_t|), and chains `logging.chain_frames` frames to report the motion norm.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.leo_lmdm import LatentMotionDenoiser, LmdmConfig
from anchored_jax.sampling.leo_motion_generation import (
    chain_motion,
    delta_statistics,
    motion_norm_statistics,
    sample_motion,
)
from anchored_jax.sampling.leo_motion_statistics import bootstrap_rel_errors
from anchored_jax.training.config_checks import validate_lmdm_config
from anchored_jax.training.leo_losses import lmdm_loss
from anchored_jax.training.optimizer import make_optimizer
from anchored_jax.training.train_state import (
    TrainState,
    create_train_state,
    param_count,
    split_model,
)


def lmdm_config(config: ml_collections.ConfigDict) -> LmdmConfig:
    return LmdmConfig(**config.model.to_dict())


def init_lmdm(config: ml_collections.ConfigDict, seed: int):
    """`(graphdef, tx, state)`: a fresh denoiser from `seed`, its optimiser and train state."""
    graphdef, params = split_model(LatentMotionDenoiser(lmdm_config(config), rngs=nnx.Rngs(seed)))
    tx = make_optimizer(config.training)
    return graphdef, tx, create_train_state(params, tx)


class LmdmTask:
    name = "lmdm"
    batch_ranks = {"codes_BLM": 3, "times_BL": 2}
    eval_every_steps = None  # sampling and chaining are costly: only at the last step
    sample_every_steps = None

    def __init__(self, config: ml_collections.ConfigDict, *, validate: bool = True):
        if validate:
            validate_lmdm_config(config)
        self.config = config
        self.ema_decay = config.training.ema_decay
        self.schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
        self.tx = make_optimizer(config.training)
        model = nnx.eval_shape(lambda: LatentMotionDenoiser(lmdm_config(config), rngs=nnx.Rngs(0)))
        self.graphdef, _ = split_model(model)

    def init(self) -> TrainState:
        return init_lmdm(self.config, self.config.seed)[2]

    def step(self, state: TrainState, batch, key, frozen):
        del frozen
        diffusion = self.config.diffusion

        def loss_fn(params):
            return lmdm_loss(
                self.graphdef,
                params,
                self.schedule,
                batch["codes_BLM"],
                key,
                prediction=diffusion.prediction,
                condition_dropout=diffusion.condition_dropout,
                times_BL=batch.get("times_BL"),
                loss_weighting=diffusion.loss_weighting,
                min_snr_gamma=diffusion.min_snr_gamma,
            )

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return state.replace(params=params, opt_state=opt_state), metrics

    def train_key(self) -> jax.Array:
        return jax.random.key(self.config.seed + 1)

    def describe(self, state: TrainState) -> tuple[str, dict]:
        n = param_count(state.params)
        return f"LMDM: {n:,} parameters", {"lmdm_params": n}

    def evaluate(self, state: TrainState, test_windows_WLM: np.ndarray, step: int, setup):
        config = self.config
        ema_params = jax.device_get(state.ema_params)
        n = min(config.logging.eval_sequences, len(test_windows_WLM))
        order = np.random.default_rng(0).permutation(len(test_windows_WLM))[:n]
        real_BLM = test_windows_WLM[order]
        common = dict(
            num_steps=config.diffusion.sample_steps, prediction=config.diffusion.prediction
        )
        key = jax.random.key(config.seed + 2)
        generated = sample_motion(
            self.graphdef,
            ema_params,
            self.schedule,
            real_BLM[:, 0],
            key,
            length=config.model.length,
            **common,
        )
        chained = chain_motion(
            self.graphdef,
            ema_params,
            self.schedule,
            real_BLM[: config.logging.chain_sequences, 0],
            jax.random.fold_in(key, 1),
            num_frames=config.logging.chain_frames,
            length=config.model.length,
            **common,
        )
        real, gen = delta_statistics(real_BLM), delta_statistics(generated)
        metrics = {
            "real_delta_mean": real["delta_mean"],
            "real_delta_std": real["delta_std"],
            "generated_delta_mean": gen["delta_mean"],
            "generated_delta_std": gen["delta_std"],
            "chain_finite": bool(np.isfinite(np.asarray(chained)).all()),
            "chain_norm": motion_norm_statistics(chained),
            "real_norm_mean": float(np.linalg.norm(real_BLM, axis=-1).mean()),
        }
        # 90% intervals of the relative errors, over paired resamplings of the windows.
        intervals = bootstrap_rel_errors(real_BLM, np.asarray(generated))
        for key in ("delta_mean", "delta_std"):
            metrics[f"{key}_rel_error"] = metrics[f"generated_{key}"] / real[key] - 1.0
            metrics[f"{key}_rel_error_interval"] = intervals[key]
        logging.info(
            "step %d: |delta alpha| generated %.4f, held-out real %.4f",
            step,
            metrics["generated_delta_mean"],
            metrics["real_delta_mean"],
        )
        return metrics, {}

    def sample(self, state, eval_data, step, setup) -> dict:
        return {}
