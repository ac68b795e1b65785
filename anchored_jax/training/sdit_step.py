"""The sDiT train and eval steps: pure functions of (state, batch, key), jitted by the loop.

Each clip's frames get a diffusion timestep of their own (`t_BK`). With probability
`known_anchor_prob` the clip's first frame is the *known anchor*: it is fed clean at t=0 and
left out of the loss, which is exactly how the anchored sampler holds a known source image.
Identity and landmarks are dropped independently and replaced by the model's learned nulls, so
one model serves every classifier-free-guidance combination.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from anchored_jax.diffusion.objectives import diffusion_loss
from anchored_jax.diffusion.schedules import Schedule, q_sample
from anchored_jax.training.train_state import TrainState

Batch = Mapping[str, jax.Array]
TIMESTEP_MODES = ("shared", "per_frame")


def draw_noising(
    key: jax.Array,
    x0_BKHWC: jax.Array,
    schedule: Schedule,
    training: ml_collections.ConfigDict,
) -> dict[str, jax.Array]:
    """Draws timesteps, noise, the known-anchor mask and condition drops for one batch."""
    B, K = x0_BKHWC.shape[:2]
    k_t, k_noise, k_anchor, k_id, k_lm = jax.random.split(key, 5)
    T = schedule.num_timesteps
    if training.timesteps == "shared":
        t_BK = jnp.broadcast_to(jax.random.randint(k_t, (B, 1), 0, T), (B, K))
    else:
        t_BK = jax.random.randint(k_t, (B, K), 0, T)
    known_B = jax.random.bernoulli(k_anchor, training.known_anchor_prob, (B,))
    known_BK = known_B[:, None] & (jnp.arange(K) == 0)[None, :]
    t_BK = jnp.where(known_BK, 0, t_BK)
    noise_BKHWC = jax.random.normal(k_noise, x0_BKHWC.shape, x0_BKHWC.dtype)
    x_t_BKHWC = q_sample(schedule, x0_BKHWC, t_BK, noise_BKHWC)
    # A known frame is exactly the clean frame, not q_sample at t=0 (which still adds ~1% noise).
    x_t_BKHWC = jnp.where(known_BK[:, :, None, None, None], x0_BKHWC, x_t_BKHWC)
    return dict(
        t_BK=t_BK,
        noise_BKHWC=noise_BKHWC,
        x_t_BKHWC=x_t_BKHWC,
        loss_weight_BK=(~known_BK).astype(jnp.float32),
        drop_identity_B=jax.random.bernoulli(k_id, training.identity_drop_prob, (B,)),
        drop_landmarks_B=jax.random.bernoulli(k_lm, training.landmark_drop_prob, (B,)),
    )


def denoising_loss(
    params: nnx.State,
    graphdef: nnx.GraphDef,
    batch: Batch,
    noising: Mapping[str, jax.Array],
    schedule: Schedule,
    prediction: str,
) -> jax.Array:
    model = nnx.merge(graphdef, params)
    out_BKHWC = model(
        noising["x_t_BKHWC"],
        noising["t_BK"],
        batch["times_BK"],
        batch["landmarks_BKLC"],
        batch["identity_BHWC"],
        drop_identity_B=noising["drop_identity_B"],
        drop_landmarks_B=noising["drop_landmarks_B"],
    )
    return diffusion_loss(
        prediction,
        schedule,
        out_BKHWC.astype(jnp.float32),
        batch["video_BKHWC"],
        noising["noise_BKHWC"],
        noising["t_BK"],
        weight=noising["loss_weight_BK"],
    )


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: Schedule,
    config: ml_collections.ConfigDict,
    learning_rate_fn: Callable[[jax.Array], jax.Array],
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    training = config.training
    prediction = config.diffusion.prediction

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        noising = draw_noising(key, batch["video_BKHWC"], schedule, training)
        loss, grads = jax.value_and_grad(denoising_loss)(
            state.params, graphdef, batch, noising, schedule, prediction
        )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        # The loop's guard (train_state.guard_and_average) keeps the old params, moments and
        # EMA if anything here is non-finite, advances the step and updates the EMA.
        new_state = state.replace(
            params=optax.apply_updates(state.params, updates), opt_state=opt_state
        )
        metrics = dict(loss=loss, grad_norm=grad_norm, learning_rate=learning_rate_fn(state.step))
        return new_state, metrics

    return train_step


def make_eval_step(
    graphdef: nnx.GraphDef,
    schedule: Schedule,
    config: ml_collections.ConfigDict,
) -> Callable[[nnx.State, Batch, jax.Array], dict[str, jax.Array]]:
    """Held-out denoising loss of the given params, with every condition present.

    Also returns the loss of always predicting zeros on the same noised batch: the floor a
    model must get clearly below to have learned anything.
    """
    prediction = config.diffusion.prediction
    eval_noising = config.training.copy_and_resolve_references()
    eval_noising.identity_drop_prob = 0.0
    eval_noising.landmark_drop_prob = 0.0

    def eval_step(params: nnx.State, batch: Batch, key: jax.Array):
        noising = draw_noising(key, batch["video_BKHWC"], schedule, eval_noising)
        loss = denoising_loss(params, graphdef, batch, noising, schedule, prediction)
        zeros_loss = diffusion_loss(
            prediction,
            schedule,
            jnp.zeros_like(batch["video_BKHWC"]),
            batch["video_BKHWC"],
            noising["noise_BKHWC"],
            noising["t_BK"],
            weight=noising["loss_weight_BK"],
        )
        return dict(eval_loss=loss, eval_zeros_loss=zeros_loss)

    return eval_step
