"""The animator's train and eval steps: pure `state, batch, vgg_params -> state, metrics`.

One jitted step updates both networks with their own optax Adam (betas (0, 0.99), as LIA):
first the generator on L1 (optionally weighted towards the pixels motion changes) + perceptual
(imported VGG19, and/or a narrow random-init one) + non-saturating GAN loss, then the
discriminator on
the logistic loss (plus an optional R1 penalty on real frames) against the generator's output
of the same step. The imported VGG19 parameters come in as an argument, never from a global;
the random-init features are built from `seed` when the step is made and fixed thereafter.
On a mesh the batch is sharded over the data axis and the states are replicated; the step is
the same function.
"""

from collections.abc import Mapping

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from anchored_jax.models.leo_animator_config import AnimatorConfig
from anchored_jax.models.leo_discriminator import LeoDiscriminator
from anchored_jax.models.leo_generator import LeoGenerator
from anchored_jax.models.leo_vgg19 import Vgg19Features
from anchored_jax.training.leo_losses import (
    discriminator_loss,
    generator_adversarial_loss,
    ibug68_indices,
    keypoint_loss,
    l1_loss,
    landmark_weight_map,
    motion_weight_map,
    perceptual_loss,
    psnr,
    weighted_l1_loss,
)
from anchored_jax.training.train_state import split_model


@flax.struct.dataclass
class AnimatorState:
    step: jax.Array  # int32 scalar
    gen_params: nnx.State
    disc_params: nnx.State
    gen_opt_state: optax.OptState
    disc_opt_state: optax.OptState


@flax.struct.dataclass
class AnimatorGraphs:
    """The static halves of the split modules (hashable, so they close over jit cleanly)."""

    gen: nnx.GraphDef = flax.struct.field(pytree_node=False)
    disc: nnx.GraphDef = flax.struct.field(pytree_node=False)
    vgg: nnx.GraphDef | None = flax.struct.field(pytree_node=False, default=None)
    # the frozen landmark regressor of the keypoint loss (None: that term is off)
    keypoints: nnx.GraphDef | None = flax.struct.field(pytree_node=False, default=None)


def animator_config(config: ml_collections.ConfigDict) -> AnimatorConfig:
    return AnimatorConfig(**config.model.to_dict())


GEN_LR_SCHEDULES = ("constant", "cosine")


def make_optimizers(training: ml_collections.ConfigDict):
    """Adam for G and D, betas (0, 0.99) as LIA: no momentum keeps the GAN game stable.

    `training.gen_lr_schedule`: "constant" (LIA) or "cosine" (decays the generator's rate to
    0 at `num_steps`: a short run ends on low-noise weights rather than on a noisy step).
    """
    schedule = training.get("gen_lr_schedule", "constant")
    gen_lr = training.gen_learning_rate
    if schedule == "cosine":
        gen_lr = optax.cosine_decay_schedule(gen_lr, training.num_steps)
    elif schedule != "constant":
        raise ValueError(
            f"training.gen_lr_schedule: expected one of {list(GEN_LR_SCHEDULES)}, got {schedule!r}"
        )
    gen = optax.adam(gen_lr, b1=training.b1, b2=training.b2)
    disc = optax.adam(training.disc_learning_rate, b1=training.b1, b2=training.b2)
    return gen, disc


def init_animator(config: ml_collections.ConfigDict, seed: int, gen_tx, disc_tx):
    """`(graphs, state)`: fresh generator and discriminator from `seed`."""
    model_config = animator_config(config)
    keys = nnx.Rngs(seed)
    gen_graph, gen_params = split_model(LeoGenerator(model_config, rngs=keys))
    disc_graph, disc_params = split_model(LeoDiscriminator(model_config, rngs=keys))
    state = AnimatorState(
        step=jnp.zeros((), jnp.int32),
        gen_params=gen_params,
        disc_params=disc_params,
        gen_opt_state=gen_tx.init(gen_params),
        disc_opt_state=disc_tx.init(disc_params),
    )
    vgg_graph = nnx.graphdef(nnx.eval_shape(lambda: Vgg19Features(rngs=nnx.Rngs(0))))
    return AnimatorGraphs(gen_graph, disc_graph, vgg_graph), state


def random_perceptual_features(losses: ml_collections.ConfigDict, seed: int):
    """`(graphdef, params)` of the narrow random-init VGG19 of `losses.random_perceptual_*`,
    or None when that term is off. Same `seed`, same features (a resumed run sees the same)."""
    if losses.get("random_perceptual_weight", 0.0) <= 0:
        return None
    vgg = Vgg19Features(
        rngs=nnx.Rngs(seed),
        width_divisor=losses.random_perceptual_width_divisor,
        num_blocks=losses.random_perceptual_blocks,
    )
    return nnx.split(vgg)


def make_train_step(
    graphs: AnimatorGraphs, gen_tx, disc_tx, losses: ml_collections.ConfigDict, seed: int = 0
):
    """`step(state, batch, vgg_params, keypoint_params) -> (state, metrics)`; `vgg_params=None`
    skips the imported-VGG19 perceptual term (tiny CPU runs without imported VGG weights), and
    the keypoint term needs `keypoint_params` (the frozen regressor of `graphs.keypoints`).
    `seed` makes the random-init perceptual features, when `losses.random_perceptual_weight > 0`.
    """
    l1_weight, gan_weight, r1_weight = losses.l1_weight, losses.gan_weight, losses.r1_weight
    landmark_weight = losses.get("landmark_weight", 0.0)
    landmark_sigma = losses.get("landmark_sigma", 1.5)
    landmark_points = ibug68_indices(losses.get("landmark_parts", "all"), "losses.landmark_parts")
    perceptual_weight = losses.perceptual_weight
    motion_weight = losses.get("motion_weight", 0.0)
    motion_blur = losses.get("motion_blur", 1)
    l2_weight = losses.get("l2_weight", 0.0)
    random_weight = losses.get("random_perceptual_weight", 0.0)
    random_features = random_perceptual_features(losses, seed)
    keypoint_weight = losses.get("keypoint_weight", 0.0)
    keypoint_points = ibug68_indices(losses.get("keypoint_parts", "all"), "losses.keypoint_parts")

    def gen_loss_fn(gen_params, disc_params, frozen, batch):
        vgg_params, keypoint_params = frozen
        gen = nnx.merge(graphs.gen, gen_params)
        fake = gen(batch["source_BHWC"], batch["driving_BHWC"])
        real = batch["driving_BHWC"]
        l1 = l1_loss(fake, real)
        metrics = {"l1": l1}
        if motion_weight > 0 or landmark_weight > 0:
            weight_BHW1 = 1.0
            if motion_weight > 0:
                weight_BHW1 = motion_weight_map(
                    batch["source_BHWC"], real, weight=motion_weight, blur=motion_blur
                )
            if landmark_weight > 0:
                weight_BHW1 = (
                    weight_BHW1
                    + landmark_weight_map(
                        batch["landmarks_B2L2"][:, :, landmark_points],
                        real.shape[1],
                        weight=landmark_weight,
                        sigma_px=landmark_sigma,
                    )
                    - 1.0
                )
            metrics["weighted_l1"] = weighted_l1_loss(fake, real, weight_BHW1)
            total = l1_weight * metrics["weighted_l1"]
        else:
            total = l1_weight * l1
        if l2_weight > 0:
            metrics["l2"] = jnp.mean(jnp.square(fake - real))
            total = total + l2_weight * metrics["l2"]
        if random_features is not None:
            random_vgg = nnx.merge(*random_features)
            perc = perceptual_loss(random_vgg, fake, real, scales=losses.random_perceptual_scales)
            total = total + random_weight * perc
            metrics["random_perceptual"] = perc
        if vgg_params is not None and perceptual_weight > 0:
            vgg = nnx.merge(graphs.vgg, vgg_params)
            perc = perceptual_loss(vgg, fake, real)
            total = total + perceptual_weight * perc
            metrics["perceptual"] = perc
        if keypoint_weight > 0:
            regressor = nnx.merge(graphs.keypoints, keypoint_params)
            found = keypoint_loss(
                lambda x: regressor(x)[:, keypoint_points],
                regressor.settings.work_size,
                fake,
                batch["landmarks_B2L2"][:, 1, keypoint_points],
            )
            total = total + keypoint_weight * found
            metrics["keypoint"] = found
        if gan_weight > 0:
            adv = generator_adversarial_loss(nnx.merge(graphs.disc, disc_params)(fake))
            total = total + gan_weight * adv
            metrics["gen_adversarial"] = adv
        metrics["gen_loss"] = total
        return total, (fake, metrics)

    def disc_loss_fn(disc_params, fake, real):
        disc = nnx.merge(graphs.disc, disc_params)
        real_logits, fake_logits = jnp.split(disc(jnp.concatenate([real, fake])), 2)
        loss = discriminator_loss(real_logits, fake_logits)
        metrics = {"real_logit": real_logits.mean(), "fake_logit": fake_logits.mean()}
        if r1_weight > 0:
            grad_real = jax.grad(lambda x: nnx.merge(graphs.disc, disc_params)(x).sum())(real)
            r1 = jnp.mean(jnp.sum(grad_real**2, axis=(1, 2, 3)))
            loss = loss + 0.5 * r1_weight * r1
            metrics["r1"] = r1
        metrics["disc_loss"] = loss
        return loss, metrics

    def train_step(
        state: AnimatorState,
        batch: Mapping[str, jax.Array],
        vgg_params=None,
        keypoint_params=None,
    ):
        if keypoint_weight > 0 and (graphs.keypoints is None or keypoint_params is None):
            raise ValueError(
                "losses.keypoint_weight > 0 needs the landmark regressor's graph and parameters"
            )
        (_, (fake, metrics)), gen_grads = jax.value_and_grad(gen_loss_fn, has_aux=True)(
            state.gen_params, state.disc_params, (vgg_params, keypoint_params), batch
        )
        updates, gen_opt_state = gen_tx.update(gen_grads, state.gen_opt_state, state.gen_params)
        gen_params = optax.apply_updates(state.gen_params, updates)
        metrics["loss"] = metrics["gen_loss"]
        if gan_weight > 0:
            (_, disc_metrics), disc_grads = jax.value_and_grad(disc_loss_fn, has_aux=True)(
                state.disc_params, jax.lax.stop_gradient(fake), batch["driving_BHWC"]
            )
            updates, disc_opt_state = disc_tx.update(
                disc_grads, state.disc_opt_state, state.disc_params
            )
            disc_params = optax.apply_updates(state.disc_params, updates)
            metrics.update(disc_metrics)
        else:
            disc_params, disc_opt_state = state.disc_params, state.disc_opt_state
        new_state = AnimatorState(
            step=state.step + 1,
            gen_params=gen_params,
            disc_params=disc_params,
            gen_opt_state=gen_opt_state,
            disc_opt_state=disc_opt_state,
        )
        return new_state, metrics

    return train_step


def make_reconstruction_step(graphs: AnimatorGraphs):
    """`(gen_params, video_BTHWC) -> (recon_BTHWC, metrics)`: self-reconstruction.

    Frame 0 is the source and every frame drives it (absolute mode, as LIA's evaluation.py:
    `gen(frame_0, frame_t)`). The copy-source baseline
    predicts frame 0 for every frame; the metrics exclude frame 0, which both get for free.
    """

    def reconstruct(gen_params, video_BTHWC):
        gen = nnx.merge(graphs.gen, gen_params)
        B, T = video_BTHWC.shape[:2]
        z_s, feats, _ = gen.encode(video_BTHWC[:, 0])
        frames_TBHWC = jnp.swapaxes(video_BTHWC, 0, 1)

        def render_frame(_, driving_BHWC):
            _, _, alpha = gen.encode(driving_BHWC)
            return None, gen.render(z_s, feats, alpha)

        _, recon_TBHWC = jax.lax.scan(render_frame, None, frames_TBHWC)
        # Frames live in [-1, 1] (what the figure and any saved video show), so clip.
        recon_BTHWC = jnp.clip(jnp.swapaxes(recon_TBHWC, 0, 1), -1.0, 1.0)
        real = video_BTHWC[:, 1:].reshape(-1, *video_BTHWC.shape[2:])
        fake = recon_BTHWC[:, 1:].reshape(real.shape)
        copy = jnp.broadcast_to(video_BTHWC[:, :1], video_BTHWC[:, 1:].shape).reshape(real.shape)
        metrics = {
            "recon_l1": l1_loss(fake, real),
            "recon_psnr": jnp.mean(psnr(fake, real)),
            "copy_l1": l1_loss(copy, real),
            "copy_psnr": jnp.mean(psnr(copy, real)),
        }
        return recon_BTHWC, metrics

    return reconstruct
