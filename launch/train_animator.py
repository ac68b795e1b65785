"""LEO animator training from a config: validation, frame-pair inputs, held-out videos, loop."""

import sys

import jax
import ml_collections
from absl import logging

from anchored_jax.models.leo_vgg19 import Vgg19Features, load_vgg19_state_dict
from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.config_checks import ConfigError, ensure_writable_workdir
from anchored_jax.training.leo_animator_loop import train_animator
from anchored_jax.training.leo_animator_step import GEN_LR_SCHEDULES, animator_config
from data_pipelines.frame_pairs import build_pair_dataset, read_videos


def validate_animator_config(config: ml_collections.ConfigDict) -> None:
    """One ConfigError line for the first bad field."""
    try:
        model = animator_config(config)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    if config.data.image_size != model.image_size:
        raise ConfigError(
            f"model.image_size: expected data.image_size ({config.data.image_size}), "
            f"got {model.image_size}"
        )
    training, losses = config.training, config.losses
    for name in ("batch_size", "num_steps"):
        if training[name] < 1:
            raise ConfigError(f"training.{name}: expected >= 1, got {training[name]}")
    for name in ("gen_learning_rate", "disc_learning_rate"):
        if not training[name] > 0:
            raise ConfigError(f"training.{name}: expected > 0, got {training[name]}")
    schedule = training.get("gen_lr_schedule", "constant")
    if schedule not in GEN_LR_SCHEDULES:
        raise ConfigError(
            f"training.gen_lr_schedule: expected one of {list(GEN_LR_SCHEDULES)}, got {schedule!r}"
        )
    for name in ("l1_weight", "perceptual_weight", "gan_weight", "r1_weight"):
        if not losses[name] >= 0:
            raise ConfigError(f"losses.{name}: expected >= 0, got {losses[name]}")
    if losses.perceptual_weight > 0 and not losses.vgg19_weights:
        raise ConfigError(
            "losses.vgg19_weights: the perceptual loss needs a torchvision VGG19 state dict "
            "(.safetensors or .pth); set a path, or losses.perceptual_weight=0"
        )
    for name in ("log_every_steps", "eval_every_steps", "eval_videos", "eval_frames"):
        if config.logging[name] < 1:
            raise ConfigError(f"logging.{name}: expected >= 1, got {config.logging[name]}")
    if config.checkpoint.every_steps < 1:
        raise ConfigError(
            f"checkpoint.every_steps: expected >= 1, got {config.checkpoint.every_steps}"
        )


def load_vgg_params(path: str):
    """VGG19 parameters from a torchvision-format state dict file (no pickles)."""
    from flax import nnx

    from anchored_jax.interop.lia_import import read_state_dict

    state_dict = read_state_dict(path)  # first: a bad file fails before VGG19 is built
    vgg = Vgg19Features(rngs=nnx.Rngs(0))
    load_vgg19_state_dict(vgg, state_dict)
    return nnx.state(vgg, nnx.Param)


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        validate_animator_config(config)
        workdir = ensure_writable_workdir(workdir)
        n_proc, proc = jax.process_count(), jax.process_index()
        local_batch = process_batch_size(config.training.batch_size)
        train = build_pair_dataset(
            config.data,
            split="train",
            batch_size=local_batch,
            seed=config.data.seed,
            shard_index=proc,
            shard_count=n_proc,
        )
        eval_videos = read_videos(
            config.data, "test", config.logging.eval_videos, config.logging.eval_frames
        )
        vgg_params = None
        if config.losses.perceptual_weight > 0:
            vgg_params = load_vgg_params(config.losses.vgg19_weights)
    except (ValueError, OSError) as e:  # ConfigError, data-config errors, unreadable weights
        sys.exit(f"error: {e}")

    summary = train_animator(
        config,
        workdir,
        train_iter=iter(train),
        eval_videos_BTHWC=eval_videos,
        vgg_params=vgg_params,
        stop_at_step=stop_at_step,
    )
    logging.info("Finished: %s", summary)
    if "recon_l1" in summary:
        print(
            f"held-out self-reconstruction at step {summary['step']}: "
            f"L1 {summary['recon_l1']:.4f}, PSNR {summary['recon_psnr']:.2f} dB; "
            f"copy-source baseline: L1 {summary['copy_l1']:.4f}, "
            f"PSNR {summary['copy_psnr']:.2f} dB"
        )
    return summary
