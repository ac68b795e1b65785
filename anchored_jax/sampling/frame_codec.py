"""Between pixels and the frames the sDiT denoises.

A pixel model (3 input channels) denoises pixels in [-1, 1]: the codec is the identity. A
latent model denoises the scaled latents of a KL autoencoder; its codec encodes pixels with
that autoencoder (the posterior mean, as the latent cache does) and decodes generated latents
back to pixels. The caller loads the autoencoder (`interop.diffusers_vae.load_run_vae`, from
the run's `data.vae` or a folder it names) and passes it in, so sampling never reads weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import ml_collections
import numpy as np

from anchored_jax.models.autoencoder_kl import AutoencoderKL, decode_frames, encode_frames

Frames = Callable[[np.ndarray], np.ndarray]  # [..., H, W, C] -> [..., H', W', C']


@dataclasses.dataclass(frozen=True)
class FrameCodec:
    encode: Frames  # pixels in [-1, 1] -> model frames
    decode: Frames  # model frames -> pixels in [-1, 1]


def _identity(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, np.float32)


def _over_frames(fn, vae) -> Frames:
    """Applies a jitted `[B, K, H, W, C]` autoencoder function to any leading axes."""

    def apply(frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames, np.float32)
        lead = frames.shape[:-3]
        out = fn(vae, jnp.asarray(frames.reshape((1, -1) + frames.shape[-3:])))
        return np.asarray(out).reshape(lead + out.shape[-3:])

    return apply


def frame_codec(
    config: ml_collections.ConfigDict, vae: AutoencoderKL | None = None
) -> FrameCodec | None:
    """The codec of a run's model; None for a latent model with no autoencoder to decode it.

    vae: the loaded autoencoder of a latent model (`interop.diffusers_vae.load_run_vae`
      reads the run's `data.vae` or a folder the caller names); None for a pixel model.
    """
    if isinstance(vae, str):
        raise TypeError(
            "frame_codec: expected a loaded autoencoder (interop.diffusers_vae.load_run_vae), "
            f"got the path {vae!r}"
        )
    if vae is None:
        return FrameCodec(_identity, _identity) if config.model.in_channels == 3 else None
    if vae.config.latent_channels != config.model.in_channels:
        raise ValueError(
            f"data.vae: the autoencoder decodes {vae.config.latent_channels}-channel latents, "
            f"the model has model.in_channels={config.model.in_channels}"
        )
    return FrameCodec(_over_frames(encode_frames, vae), _over_frames(decode_frames, vae))
