"""LEO animator training from a config: the task, frame-pair inputs and held-out videos, the
frozen VGG19 of the perceptual loss and landmark regressor of the keypoint loss, the loop, the
closing line."""

import sys

import jax
import ml_collections
import numpy as np
from absl import logging

from anchored_jax.models.leo_vgg19 import Vgg19Features, load_vgg19_state_dict
from anchored_jax.parallel.multihost import process_batch_size
from anchored_jax.training.config_checks import ensure_writable_workdir, validate_animator_config
from anchored_jax.training.loop import RUN_ERRORS, TrainData, train
from anchored_jax.training.tasks.animator import AnimatorTask
from data_pipelines.frame_pairs import (
    build_pair_dataset,
    make_pair_source,
    read_videos,
    validate_pair_config,
)


def load_vgg_params(path: str):
    """VGG19 parameters from a torchvision-format state dict file (no pickles)."""
    from flax import nnx

    from anchored_jax.interop.lia_import import read_state_dict

    state_dict = read_state_dict(path)  # first: a bad file fails before VGG19 is built
    vgg = Vgg19Features(rngs=nnx.Rngs(0))
    load_vgg19_state_dict(vgg, state_dict)
    return nnx.state(vgg, nnx.Param)


def read_data(config: ml_collections.ConfigDict, keypoint_params=None) -> TrainData:
    """This process's pair iterator, the held-out videos and the frozen inputs of the step:
    the VGG19's params (if used) and `keypoint_params`, the landmark regressor's (if used)."""
    train_pairs = build_pair_dataset(
        config.data,
        split="train",
        batch_size=process_batch_size(config.training.batch_size),
        seed=config.data.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    eval_videos = read_videos(
        config.data, "test", config.logging.eval_videos, config.logging.eval_frames
    )
    eval_data = eval_videos
    if config.logging.get("eval_akd", False) and config.data.source == "synthetic":
        from anchored_jax.evaluation import keypoint_metrics

        # AKD: the synthetic-face regressor's landmarks against the renderer's exact ones.
        source = make_pair_source(config.data, "test")
        T = eval_videos.shape[1]
        landmarks = [source[v].landmarks_TLC[:T, :, :2] for v in range(len(eval_videos))]
        eval_data = {
            "videos_BTHWC": eval_videos,
            "landmarks_BTL2": np.stack(landmarks),
            "extract_landmarks": keypoint_metrics.landmark_extractor("synthetic"),
        }
    frozen = {"vgg": None, "keypoints": keypoint_params}
    if config.losses.perceptual_weight > 0:
        frozen["vgg"] = load_vgg_params(config.losses.vgg19_weights)
    return TrainData(train_iter=iter(train_pairs), eval_data=eval_data, frozen=frozen)


def keypoint_regressor(config: ml_collections.ConfigDict):
    """`(graphdef, params)` of the keypoint loss's frozen landmark regressor: the synthetic
    faces' regressor with `losses.keypoint_regressor_seed` (cached; trained first if absent,
    ~1.5 min), or `(None, None)` when that term is off."""
    if config.losses.get("keypoint_weight", 0.0) <= 0:
        return None, None
    from flax import nnx

    from data_pipelines import synthetic_landmark_regressor

    model, path, seconds = synthetic_landmark_regressor.load_or_train(
        config.data.image_size, seed=config.losses.keypoint_regressor_seed
    )
    how = f"trained in {seconds:.0f} s" if seconds is not None else "cached"
    logging.info("keypoint loss: landmark regressor %s (%s)", path, how)
    return nnx.split(model, nnx.Param)


def run(config: ml_collections.ConfigDict, workdir: str, stop_at_step: int | None = None) -> dict:
    try:
        validate_animator_config(config)  # before the regressor's build: bad input fails first
        validate_pair_config(config.data)
        workdir = ensure_writable_workdir(workdir)
        keypoint_graph, keypoint_params = keypoint_regressor(config)
        task = AnimatorTask(config, validate=False, keypoint_graph=keypoint_graph)
        data = read_data(config, keypoint_params)
    except (ValueError, OSError) as e:  # ConfigError, data-config errors, unreadable weights
        sys.exit(f"error: {e}")
    try:
        summary = train(task, workdir, data, stop_at_step=stop_at_step)
    except RUN_ERRORS as e:
        sys.exit(f"error: {e}")
    logging.info("Finished: %s", summary)
    if "recon_l1" in summary:
        print(
            f"held-out self-reconstruction at step {summary['eval_step']}: "
            f"L1 {summary['recon_l1']:.4f}, PSNR {summary['recon_psnr']:.2f} dB; "
            f"copy-source baseline: L1 {summary['copy_l1']:.4f}, "
            f"PSNR {summary['copy_psnr']:.2f} dB"
        )
    return summary
