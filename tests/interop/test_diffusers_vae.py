"""The diffusers VAE importer: parity with an independent torch forward, and layout errors."""

import json
import os

import numpy as np
import pytest

from anchored_jax.interop.diffusers_vae import load_diffusers_vae
from anchored_jax.interop.weight_files import WeightLayoutError
from anchored_jax.models.autoencoder_kl import decode_frames, encode_frames
from tests.interop.vae_reference import config_dict, reference_encode_decode, write_random_vae


def _images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def _max_rel(ours, ref) -> float:
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("legacy", [False, True], ids=["current_names", "legacy_attention"])
def test_encode_decode_match_torch_reference(tmp_path, legacy):
    torch = pytest.importorskip("torch")
    del torch
    cfg = config_dict()
    sd = write_random_vae(str(tmp_path), cfg, seed=3, legacy_attention=legacy)
    vae = load_diffusers_vae(str(tmp_path))
    images = _images()
    ref_latents, ref_images = reference_encode_decode(sd, cfg, images.astype(np.float64))

    latents = np.asarray(encode_frames(vae, images[None]))[0]
    assert latents.shape == (3, 8, 8, 4)
    assert _max_rel(latents, ref_latents) < 1e-4, _max_rel(latents, ref_latents)
    # Decode the reference's own latents, so decode is checked on its own.
    decoded = np.asarray(decode_frames(vae, ref_latents[None].astype(np.float32)))[0]
    assert decoded.shape == (3, 16, 16, 3)
    assert _max_rel(decoded, ref_images) < 1e-4, _max_rel(decoded, ref_images)
    # The weights are far from zero: the outputs carry real signal, not a degenerate match.
    assert np.std(ref_latents) > 0.05 and np.std(ref_images) > 0.05


def test_sampled_latents_use_the_posterior_spread(tmp_path):
    import jax

    cfg = config_dict()
    write_random_vae(str(tmp_path), cfg, seed=4)
    vae = load_diffusers_vae(str(tmp_path))
    x = _images(n=2)[None]
    mean = np.asarray(encode_frames(vae, x))
    draws = np.stack([np.asarray(encode_frames(vae, x, jax.random.key(i))) for i in range(4)])
    _, logvar = vae.posterior(x[0])
    spread = cfg["scaling_factor"] * np.exp(0.5 * np.asarray(logvar))
    z = (draws - mean) / spread
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1


def test_layout_errors_list_every_difference(tmp_path):
    from safetensors.numpy import save_file

    cfg = config_dict()
    sd = write_random_vae(str(tmp_path), cfg, seed=6)
    del sd["decoder.conv_out.bias"]
    sd["encoder.extra.weight"] = np.zeros(3, np.float32)
    sd["quant_conv.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    save_file(sd, os.path.join(tmp_path, "diffusion_pytorch_model.safetensors"))
    with pytest.raises(WeightLayoutError) as err:
        load_diffusers_vae(str(tmp_path))
    message = str(err.value)
    assert "1 missing keys: decoder.conv_out.bias" in message
    assert "1 unexpected keys: encoder.extra.weight" in message
    assert "quant_conv.weight (8, 8, 3, 3) (expected (8, 8, 1, 1))" in message
    assert "\n" not in message


def test_wrong_size_config_is_reported_against_the_weights(tmp_path):
    write_random_vae(str(tmp_path), config_dict(channels=(16, 32)), seed=7)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config_dict(channels=(16, 48)), f)
    with pytest.raises(WeightLayoutError, match="shapes differ"):
        load_diffusers_vae(str(tmp_path))


def test_unsupported_block_type_names_the_field(tmp_path):
    cfg = config_dict()
    cfg["down_block_types"] = ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]
    write_random_vae(str(tmp_path), config_dict(), seed=8)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match="down_block_types must all be 'DownEncoderBlock2D'"):
        load_diffusers_vae(str(tmp_path))
