"""Latent-space training end to end: the cache command, the latent source, training, decoding.

A random 8x-down VAE (tiny widths, saved in the diffusers layout) encodes synthetic 64px faces
into 8x8x4 latents with `python -m launch.cache_latents`; an S-config sDiT shrunk to a few
thousand parameters then trains on them.
"""

import json
import os

import jax
import numpy as np
import pytest

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.interop.diffusers_vae import load_diffusers_vae
from anchored_jax.models.autoencoder_kl import decode_frames, encode_frames
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from anchored_jax.training.config_checks import validate_sdit_config
from anchored_jax.training.sample_grid import frame_decoder, make_sample_grid, to_uint8
from configs import sdit
from data_pipelines.latent_cache import CACHE_INFO, LatentCacheSource, split_path
from data_pipelines.pipeline import (
    build_clip_dataset,
    check_model_fits_data,
    make_source,
    validate_data_config,
)
from launch.cache_latents import cache_latents, default_data_config
from tests.cli_testing import one_line_error, run_module, run_train
from tests.interop.vae_reference import config_dict, write_random_vae

# The pixel data the cache is written from: 2x2 training videos, 1x2 test videos, 8 frames.
PIXELS = dict(
    image_size=64, video_frames=8, clip_frames=3, min_window=3, max_window=8,
    num_train_identities=2, num_test_identities=1, videos_per_identity=2,
)  # fmt: skip


def pixel_data(**overrides):
    data = default_data_config()
    data.update({**PIXELS, **overrides})
    return data


def latent_config(root: str, vae: str = "", num_steps: int = 30):
    """configs/sdit.py:S on the 8x8x4 cache, shrunk to run in seconds on one CPU device."""
    config = sdit.get_config("S")
    config.data.update(root=root, vae=vae, image_size=64, clip_frames=3, min_window=3, max_window=8)
    config.model.update(width=32, depth=2, num_heads=2, identity_channels=(8, 16))
    config.training.update(
        batch_size=4, num_steps=num_steps, warmup_steps=2, learning_rate=1e-3, ema_decay=0.9
    )
    config.mesh.num_devices = 1
    config.checkpoint.every_steps = 1000
    config.logging.update(
        log_every_steps=10, eval_every_steps=1000, eval_batches=1, sample_every_steps=1000,
        sample_clips=2, sample_steps=2,
    )  # fmt: skip
    return config


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("vae"))
    write_random_vae(path, config_dict(channels=(8, 8, 8, 8)), seed=2)  # 8x down, 4 channels
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory, vae_dir):
    """The cache folder, written by the command line."""
    out = str(tmp_path_factory.mktemp("latents") / "cache")
    flags = [f"--data.{k}={v}" for k, v in PIXELS.items()]
    result = run_module("launch.cache_latents", "--vae", vae_dir, "--out", out, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 4 videos, test 2 videos; 8x8x4 latents of 64px frames" in result.stdout
    assert "train: 100%" in result.stderr  # the progress bar, per split
    return out


def test_the_command_writes_each_split_and_describes_the_cache(cache, vae_dir):
    with open(os.path.join(cache, CACHE_INFO)) as f:
        info = json.load(f)
    assert (info["image_size"], info["latent_size"], info["latent_channels"]) == (64, 8, 4)
    assert info["scaling_factor"] == pytest.approx(0.18215)
    assert info["vae"] == os.path.abspath(vae_dir)
    assert info["splits"] == {
        "train": {"videos": 4, "min_frames": 8},
        "test": {"videos": 2, "min_frames": 8},
    }
    for split, videos in (("train", 4), ("test", 2)):
        source = LatentCacheSource(split_path(cache, split))
        assert len(source) == videos and source[0].num_frames == 8
        assert source.read_frames(0, [0, 7]).shape == (2, 8, 8, 4)
    assert sorted(os.listdir(cache)) == [CACHE_INFO, "test.array_record", "train.array_record"]


def test_cached_latents_decode_like_a_direct_encode(cache, vae_dir):
    vae = load_diffusers_vae(vae_dir)
    pixels = make_source(pixel_data(), "test")
    cached = LatentCacheSource(split_path(cache, "test"))
    for video_id in range(len(cached)):
        original = cached.original_video_id(video_id)
        frames = pixels.read_frames(original, np.arange(8)).astype(np.float32) / 127.5 - 1.0
        direct = np.asarray(encode_frames(vae, frames[None]))
        latents = cached.read_frames(video_id, np.arange(8))[None]
        np.testing.assert_allclose(latents, direct, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(decode_frames(vae, latents)),
            np.asarray(decode_frames(vae, direct)),
            rtol=1e-4, atol=1e-5,
        )  # fmt: skip
        assert np.std(latents) > 0.01  # real signal, not a degenerate match


def test_the_pipeline_yields_the_cached_latents_unchanged(cache):
    data = latent_config(cache).data
    batch = next(iter(build_clip_dataset(data, split="train", batch_size=4, seed=0)))
    assert batch["video_BKHWC"].shape == (4, 3, 8, 8, 4)
    assert batch["identity_BHWC"].shape == (4, 8, 8, 4)
    cached = LatentCacheSource(split_path(cache, "train"))
    for b in range(4):
        video_id = int(batch["video_id_B"][b])
        all_frames = cached.read_frames(video_id, np.arange(8))
        np.testing.assert_array_equal(
            batch["video_BKHWC"][b], all_frames[batch["frame_indices_BK"][b]]
        )
        # The identity frame is one of the video's latents, also as stored.
        assert any(np.array_equal(batch["identity_BHWC"][b], frame) for frame in all_frames)
        np.testing.assert_array_equal(
            batch["landmarks_BKLC"][b], cached[video_id].landmarks_TLC[batch["frame_indices_BK"][b]]
        )
    # Scaled latents are not pixel-normalised values: well inside [-1, 1], not spread over it.
    assert np.abs(batch["video_BKHWC"]).max() < 1.0


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    """A 30-step latent run through the sDiT trainer: (workdir, summary)."""
    from launch.train_sdit import run

    workdir = str(tmp_path_factory.mktemp("latent_run"))
    return workdir, run(latent_config(cache), workdir)


def test_training_on_latents_lowers_the_held_out_loss(trained):
    _, summary = trained
    assert summary["step"] == 30
    assert np.isfinite(summary["eval_loss"])
    assert summary["eval_loss"] < 0.9 * summary["initial_eval_loss"], summary


def test_sample_grids_show_decoded_pixels_or_nothing(cache, vae_dir, trained):
    config = latent_config(cache, vae=vae_dir)
    _, graphdef, params = load_sdit_for_inference(trained[0])  # the run's EMA params
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    batch = next(iter(build_clip_dataset(config.data, split="test", batch_size=2, seed=1)))
    grid = make_sample_grid(config, graphdef, schedule)(params, batch, jax.random.key(0))
    assert grid.dtype == np.uint8 and grid.shape == (2 * 2 * 64, 3 * 64, 3)
    real = to_uint8(decode_frames(load_diffusers_vae(vae_dir), batch["video_BKHWC"]))
    np.testing.assert_array_equal(grid[:64, :64], real[0, 0])  # row 1: the real clip, decoded
    np.testing.assert_array_equal(grid[:64, 64:128], real[0, 1])
    assert np.std(grid[64:128].astype(np.float32)) > 1.0  # row 2: a generated clip
    config.data.vae = ""
    assert make_sample_grid(config, graphdef, schedule) is None
    pixels = np.linspace(-1, 1, 2 * 3 * 4 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 4, 3)
    np.testing.assert_array_equal(frame_decoder(sdit.get_config("tiny"))(pixels), pixels)


def test_the_s_config_needs_a_latent_root(tmp_path, vae_dir):
    result = run_train("configs/sdit.py:S", tmp_path / "run")
    last = one_line_error(result)
    assert last.startswith("error: data.root: expected the latent cache folder"), last
    # With a cache of its own shape (256px frames -> 32x32x4) the shipped S config validates.
    out = str(tmp_path / "cache256")
    small = dict(num_train_identities=1, num_test_identities=1, videos_per_identity=1)
    cache_latents(
        pixel_data(image_size=256, clip_frames=8, min_window=4, max_window=32, **small),
        vae_dir, out, progress=False,
    )  # fmt: skip
    config = sdit.get_config("S")
    config.data.root = out
    config.training.batch_size = 8 * 4  # divisible by the 8 simulated devices
    validate_sdit_config(config)
    check_model_fits_data(config.data, config.model)
    batch = next(iter(build_clip_dataset(config.data, split="train", batch_size=1, seed=0)))
    assert batch["video_BKHWC"].shape == (1, 8, 32, 32, 4)


def _one_line_error(call, expected: str) -> None:
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and expected in message, message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"model.image_size": 16}, "model.image_size: the latent cache"),
        ({"model.in_channels": 3}, "model.in_channels: the latent cache"),
        ({"data.image_size": 128}, "data.image_size: expected the frame side"),
        ({"data.clip_frames": 9, "data.max_window": 16}, "data.clip_frames: expected <= 8"),
        ({"data.root": "EMPTY"}, "no latent cache (latent_cache.json missing)"),
        ({"data.vae": "OTHER_VAE"}, "scaling factor 0.13025, but the latent cache"),
    ],
)
def test_a_cache_that_does_not_fit_is_one_line(cache, tmp_path, overrides, expected):
    config = latent_config(cache)
    other_vae = tmp_path / "vae"
    other_vae.mkdir()
    (other_vae / "config.json").write_text(json.dumps({**config_dict(), "scaling_factor": 0.13025}))
    for field, value in overrides.items():
        section, name = field.split(".")
        value = {"EMPTY": str(tmp_path), "OTHER_VAE": str(other_vae)}.get(value, value)
        config[section][name] = value
    _one_line_error(
        lambda: (
            check_model_fits_data(config.data, config.model),
            make_source(config.data, "train"),
        ),
        expected,
    )


def test_pixel_sources_refuse_latent_knobs(cache):
    config = latent_config(cache)
    config.data.source = "synthetic"
    _one_line_error(lambda: validate_sdit_config(config), "model.in_channels: data.source")
    config.data.vae = "/models/vae"
    _one_line_error(lambda: validate_data_config(config.data), "data.vae: expected ''")


@pytest.mark.parametrize(
    "overrides, vae, expected",
    [
        ({}, "no_such_folder", "--vae: no_such_folder is not a folder"),
        ({}, "empty", "config.json: diffusers VAE config not found"),
        ({"image_size": 60}, "vae", "data.image_size: 60 is not a multiple of 8"),
        ({"source": "latents"}, "vae", "data.source: expected the pixel source"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(tmp_path, vae_dir, overrides, vae, expected):
    os.makedirs(tmp_path / "empty")
    folder = {"vae": vae_dir, "empty": str(tmp_path / "empty")}.get(vae, vae)
    _one_line_error(
        lambda: cache_latents(pixel_data(**overrides), folder, str(tmp_path / "out")), expected
    )
    assert not (tmp_path / "out").exists()


def test_reenacting_with_a_latent_model_encodes_the_source_and_decodes_the_video(
    trained, vae_dir, tmp_path
):
    from anchored_jax.pipelines import reenactment
    from anchored_jax.pipelines.checkpoints import load_sdit
    from anchored_jax.sampling.sampler_settings import SamplerSettings
    from data_pipelines.inference_inputs import load_driving_track
    from launch.reenact import reenact

    workdir, _ = trained
    model = load_sdit(workdir)
    track = load_driving_track("synthetic:0", model.config, 5, 25.0)
    real = track.read_real(0, 5)
    with pytest.raises(ValueError, match="--vae: the model denoises 4-channel latents"):
        reenactment.model_codec(model.config)
    settings = SamplerSettings(num_steps=2)
    video = reenactment.reenact(
        model, real[0], track.landmarks_TLC, fps=track.fps, settings=settings,
        codec=reenactment.model_codec(model.config, vae_dir),
    )  # fmt: skip
    assert video.shape == (5, 64, 64, 3) and real.shape == (5, 64, 64, 3)
    # Frame 0 is the known anchor: the source (real frame 0) through the autoencoder and back.
    vae = load_diffusers_vae(vae_dir)
    round_trip = np.asarray(decode_frames(vae, encode_frames(vae, real[None, :1])))[0, 0]
    np.testing.assert_allclose(video[0], round_trip, rtol=1e-4, atol=1e-5)
    assert np.abs(video[1:] - video[0]).mean() > 1e-3  # the other frames are generated
    out = str(tmp_path / "latent.mp4")
    reenact(workdir, "synthetic:0", out, frames=5, settings=settings, display=32, vae=vae_dir,
            loaded=model)  # fmt: skip
    assert os.path.isfile(out)
