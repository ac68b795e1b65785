"""Sample grids of held-out clips: the first row of each pair is the real clip, the second the
model's reenactment of it, generated from the clip's clean first frame (the known anchor), its
identity image, frame times and landmarks.

Grids are pixels: a latent model's clips (real and generated) go through the decoder of
`config.data.vae`; a latent run without one gets no grids (`make_sample_grid` returns None and
says so in one log line) rather than latents shown as colours.
"""

import os
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from einops import rearrange
from flax import nnx
from PIL import Image

from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.interop.diffusers_vae import load_run_vae
from anchored_jax.sampling.denoise_loop import sample
from anchored_jax.sampling.frame_codec import frame_codec

FrameDecoder = Callable[[np.ndarray], np.ndarray]  # model frames [B, K, h, w, C] -> pixels


def make_clip_sampler(
    graphdef: nnx.GraphDef,
    schedule: Schedule,
    *,
    prediction: str,
    num_steps: int,
) -> Callable[[nnx.State, Mapping[str, jax.Array], jax.Array], jax.Array]:
    """A jitted `params, batch, key -> video_BKHWC` that regenerates every frame but the first."""

    def sample_clips(params, batch, key):
        model = nnx.merge(graphdef, params)
        video_BKHWC = batch["video_BKHWC"]
        B, K = video_BKHWC.shape[:2]

        def denoise(x_t_BKHWC, t_BK):
            return model(
                x_t_BKHWC,
                t_BK,
                batch["times_BK"],
                batch["landmarks_BKLC"],
                batch["identity_BHWC"],
            ).astype(jnp.float32)

        k_noise, k_sample = jax.random.split(key)
        known_BK = jnp.broadcast_to(jnp.arange(K) == 0, (B, K))
        return sample(
            denoise,
            schedule,
            jax.random.normal(k_noise, video_BKHWC.shape, jnp.float32),
            num_steps=num_steps,
            prediction=prediction,
            sampler="ddim",
            key=k_sample,
            known_x0=video_BKHWC,
            known_mask=known_BK,
        )

    return jax.jit(sample_clips)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def clip_grid(real_BKHWC: np.ndarray, generated_BKHWC: np.ndarray) -> np.ndarray:
    """Interleaves real and generated clips as rows of frames: uint8 `[2B*H, K*W, C]`."""
    pairs_PBKHWC = np.stack([to_uint8(real_BKHWC), to_uint8(generated_BKHWC)])
    return rearrange(pairs_PBKHWC, "p b k h w c -> (b p h) (k w) c")


def write_grid_png(grid_HWC: np.ndarray, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    Image.fromarray(grid_HWC).save(tmp)
    os.replace(tmp, path)


def frame_decoder(config: ml_collections.ConfigDict) -> FrameDecoder | None:
    """What turns the model's frames into [-1, 1] pixels: nothing for a pixel model, the
    `data.vae` decoder for a latent one; None for a latent model without `data.vae`."""
    codec = frame_codec(config, load_run_vae(config))
    return None if codec is None else codec.decode


def make_sample_grid(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, schedule: Schedule
) -> Callable[[nnx.State, Mapping[str, np.ndarray], jax.Array], np.ndarray] | None:
    """`params, batch, key -> uint8 grid` in pixels (see `clip_grid`), or None (logged) when a
    latent model has no `data.vae` to show its clips with."""
    to_pixels = frame_decoder(config)
    if to_pixels is None:
        logging.info(
            "Sample grids off: this model reads %d-channel latents and data.vae (the diffusers "
            "VAE folder that decodes them) is not set.",
            config.model.in_channels,
        )
        return None
    sample_clips = make_clip_sampler(
        graphdef,
        schedule,
        prediction=config.diffusion.prediction,
        num_steps=config.logging.sample_steps,
    )

    def grid(params, batch, key) -> np.ndarray:
        generated = np.asarray(sample_clips(params, batch, key))
        return clip_grid(to_pixels(batch["video_BKHWC"]), to_pixels(generated))

    return grid
