"""The sDiT as a task of the training loop: state, denoising step, held-out loss, sample grids.

The launcher passes the held-out batches (host arrays, this process's slice) as the loop's
`eval_data`; evaluation reports the raw and EMA params' denoising loss against the loss of
predicting zeros, and the figure hook draws real clips above their reenactment by the EMA.
"""

from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.training.config_checks import validate_sdit_config
from anchored_jax.training.loop import flat_hparams
from anchored_jax.training.optimizer import learning_rate_schedule, make_optimizer
from anchored_jax.training.sample_grid import make_sample_grid
from anchored_jax.training.sdit_step import make_eval_step, make_train_step
from anchored_jax.training.train_state import (
    TrainState,
    create_train_state,
    param_count,
    split_model,
)

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


class SDiTTask:
    name = "sdit"

    def __init__(self, config: ml_collections.ConfigDict, *, validate: bool = True):
        if validate:
            validate_sdit_config(config)
        self.config = config
        self.ema_decay = config.training.ema_decay
        self.batch_ranks = model_input_ranks(config.model)
        self.eval_every_steps = config.logging.eval_every_steps
        self.sample_every_steps = config.logging.sample_every_steps
        self.schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
        self.tx = make_optimizer(config.training)
        self.graphdef, _ = split_model(nnx.eval_shape(lambda: build_model(config, config.seed)))
        self._step = make_train_step(
            self.graphdef,
            self.tx,
            self.schedule,
            config,
            learning_rate_schedule(config.training),
        )
        self.eval_step = jax.jit(make_eval_step(self.graphdef, self.schedule, config))
        keys = jax.random.split(jax.random.key(config.seed), 3)
        self._train_key, self._eval_key, self._sample_key = keys
        self._sample_grid = None

    def init(self) -> TrainState:
        return create_train_state(
            split_model(build_model(self.config, self.config.seed))[1], self.tx
        )

    def step(self, state: TrainState, batch, key, frozen):
        del frozen  # the sDiT's step has no frozen inputs
        return self._step(state, batch, key)

    def train_key(self) -> jax.Array:
        return self._train_key

    def describe(self, state: TrainState) -> tuple[str, dict]:
        n = param_count(state.params)
        return f"sDiT: {n:,} parameters", {"num_params": n, **flat_hparams(self.config)}

    def evaluate(self, state, eval_batches: Sequence[Mapping], step: int, setup):
        batches = [setup.to_device(b) for b in eval_batches]
        metrics = _mean_metrics(self.eval_step, state.params, batches, self._eval_key)
        ema = _mean_metrics(self.eval_step, state.ema_params, batches, self._eval_key)
        metrics["eval_loss_ema"] = ema["eval_loss"]
        logging.info(
            "step %d: held-out loss %.4f (EMA %.4f); predicting zeros gives %.4f",
            step,
            metrics["eval_loss"],
            metrics["eval_loss_ema"],
            metrics["eval_zeros_loss"],
        )
        return metrics, {}

    def sample(self, state, eval_batches: Sequence[Mapping], step: int, setup) -> dict:
        if self._sample_grid is None:  # built on first use: it may load a VAE decoder
            grid_fn = make_sample_grid(self.config, self.graphdef, self.schedule)
            self._sample_grid = grid_fn or (lambda *a: None)
        n = self.config.logging.sample_clips
        clips = {k: np.asarray(v)[:n] for k, v in eval_batches[0].items()}
        grid = self._sample_grid(state.ema_params, clips, self._sample_key)
        return {} if grid is None else {"samples": (f"samples/step_{step:07d}.png", grid)}


def _mean_metrics(eval_step, params, batches, key) -> dict[str, float]:
    """Mean held-out metrics over the fixed batches, with the same keys at every evaluation."""
    sums: dict[str, float] = {}
    for i, batch in enumerate(batches):
        metrics = jax.device_get(eval_step(params, batch, jax.random.fold_in(key, i)))
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + float(value)
    return {name: total / len(batches) for name, total in sums.items()}
