r"""Encodes a video dataset into a latent cache once, so latent-space sDiT training reads latents.

  python -m launch.cache_latents --vae /models/sd-vae-ft-mse --data.source=video_dir \
      --data.root=/data/vox256 --out /data/vox256_latents

`--vae` is a diffusers `AutoencoderKL` folder (`config.json` and
`diffusion_pytorch_model.safetensors`). `--data.*` are the training data config's fields
(configs/sdit.py; the defaults are the S config's 256px frames, on the synthetic faces), so the
videos are read exactly as a pixel run would read them. Every frame of every video of each split
in `--splits` is encoded (the posterior mean, times the VAE's scaling factor) into
`<out>/<split>.array_record`; `<out>/latent_cache.json`, written last, describes the cache.
Train on it with

  python -m launch.train --config configs/sdit.py:S --workdir runs/sdit_s \
      --config.data.root=/data/vox256_latents --config.data.vae=/models/sd-vae-ft-mse
"""

import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from configs import sdit  # noqa: E402
from data_pipelines.latent_cache import (  # noqa: E402
    CACHE_INFO,
    split_path,
    write_cache_info,
    write_latent_cache,
)
from data_pipelines.pipeline import LATENT_SOURCE, make_source, validate_data_config  # noqa: E402


def default_data_config() -> ml_collections.ConfigDict:
    """The S config's data section on a pixel source: what the cache is encoded from."""
    data = sdit.get_config("S").data
    data.source = "synthetic"
    return data


def load_vae(directory: str):
    """The diffusers VAE in `directory`; any problem with its files is one ValueError line."""
    from safetensors import SafetensorError

    from anchored_jax.interop.diffusers_vae import load_diffusers_vae

    if not directory:
        raise ValueError("--vae: expected a diffusers VAE folder, got ''")
    if not os.path.isdir(directory):
        raise ValueError(f"--vae: {directory} is not a folder (expected a diffusers VAE folder)")
    try:
        vae = load_diffusers_vae(directory)
    except (OSError, ValueError, ImportError, SafetensorError) as e:
        raise ValueError(f"--vae: {e}") from None
    if vae.config.in_channels != 3:
        raise ValueError(
            f"--vae: {directory} encodes {vae.config.in_channels}-channel images, not RGB"
        )
    return vae


def cache_latents(
    data: ml_collections.ConfigDict,
    vae_dir: str,
    out: str,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    batch_frames: int = 16,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Writes one cache per split and the folder's description; returns the description."""
    from anchored_jax.models.autoencoder_kl import encode_frames

    if data.source == LATENT_SOURCE:
        raise ValueError("data.source: expected the pixel source to encode, got 'latents'")
    validate_data_config(data)
    if not out:
        raise ValueError("--out: expected the cache folder to write, got ''")
    if os.path.exists(os.path.join(out, CACHE_INFO)):
        raise ValueError(f"--out: {out} already holds a latent cache; choose another folder")
    unknown = sorted(set(splits) - {"train", "test"})
    if not splits or unknown:
        raise ValueError(f"--splits: expected train and/or test, got {list(splits)}")
    if batch_frames < 1:
        raise ValueError(f"--batch_frames: expected >= 1, got {batch_frames}")
    vae = load_vae(vae_dir)
    factor = vae.config.downsample_factor
    if data.image_size % factor:
        raise ValueError(
            f"data.image_size: {data.image_size} is not a multiple of {factor}, the "
            f"downsampling factor of the VAE in {vae_dir}"
        )
    sources = {split: make_source(data, split) for split in splits}  # fail before writing
    encode = functools.partial(encode_frames, vae)
    os.makedirs(out, exist_ok=True)
    written = {}
    for split, source in sources.items():
        path = split_path(out, split)
        # Written beside its final name and renamed once complete: no half-written split.
        count = write_latent_cache(
            source, encode, path + ".tmp", batch_frames=batch_frames, dtype=dtype,
            progress=progress, desc=split,
        )  # fmt: skip
        os.replace(path + ".tmp", path)
        # Real sources keep only videos of >= data.clip_frames frames; synthetic ones all have
        # data.video_frames. Training checks its clip length against this bound.
        shortest = data.video_frames if data.source == "synthetic" else data.clip_frames
        written[split] = {"videos": count, "min_frames": shortest}
    info = {
        "image_size": data.image_size,  # frame side in pixels the latents were encoded from
        "latent_size": data.image_size // factor,
        "latent_channels": vae.config.latent_channels,
        "downsample_factor": factor,
        "scaling_factor": vae.config.scaling_factor,
        "shift_factor": vae.config.shift_factor,
        "dtype": dtype,
        "vae": os.path.abspath(vae_dir),
        "data": data.to_dict(),
        "splits": written,
    }
    write_cache_info(out, info)
    return info


def define_flags() -> None:
    """Defines the command-line flags (only when run as a command, so tests can import)."""
    config_flags.DEFINE_config_dict("data", default_data_config(), "Data config to encode.")
    flags.DEFINE_string("vae", None, "Diffusers AutoencoderKL folder.")
    flags.DEFINE_string("out", None, "Folder to write the latent cache to.")
    flags.DEFINE_list("splits", ["train", "test"], "Splits to encode.")
    flags.DEFINE_integer("batch_frames", 16, "Frames per encoder call; more = faster, more memory.")
    flags.DEFINE_enum("dtype", "float32", ["float32", "float16"], "Stored latent dtype.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    try:
        info = cache_latents(
            FLAGS.data, FLAGS.vae or "", FLAGS.out or "", splits=tuple(FLAGS.splits),
            batch_frames=FLAGS.batch_frames, dtype=FLAGS.dtype,
        )  # fmt: skip
    except (OSError, ValueError) as e:  # bad flags, VAE files or dataset files
        sys.exit(f"error: {e}")
    side, channels = info["latent_size"], info["latent_channels"]
    counts = ", ".join(f"{s} {v['videos']} videos" for s, v in info["splits"].items())
    print(
        f"wrote {FLAGS.out}: {counts}; {side}x{side}x{channels} latents of "
        f"{info['image_size']}px frames. Train with --config.data.root={FLAGS.out}"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
