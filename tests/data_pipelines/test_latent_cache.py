"""Latent caches: written through grain and ArrayRecord, read back as a grain source."""

import functools
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from anchored_jax.interop.diffusers_vae import load_diffusers_vae
from anchored_jax.models.autoencoder_kl import decode_frames, encode_frames
from data_pipelines.latent_cache import LatentCacheSource, write_latent_cache
from data_pipelines.sources import SyntheticFaceSource
from tests.interop.vae_reference import config_dict, write_random_vae


class PixelCodec(nnx.Module):
    """Pixels behind the autoencoder's encode/decode interface: a cache that must round-trip."""

    def encode(self, x_BHWC, key=None):
        return x_BHWC.astype(jnp.float32)

    def decode(self, latents_BhwC):
        return latents_BhwC.astype(jnp.float32)


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaceSource(
        "train", num_identities=3, videos_per_identity=1, num_frames=5, image_size=16,
        fps=25.0, seed=0,
    )  # fmt: skip


def test_identity_cache_decodes_back_to_the_frames(faces, tmp_path):
    path = str(tmp_path / "pixels.array_record")
    encode = functools.partial(encode_frames, PixelCodec())
    assert write_latent_cache(faces, encode, path, batch_frames=2, progress=False) == len(faces)
    cache = LatentCacheSource(path)
    assert len(cache) == len(faces) and cache.image_size == 16
    for video_id in range(len(faces)):
        record, original = cache[video_id], faces[video_id]
        assert (record.identity_id, record.num_frames, record.fps) == (
            original.identity_id, 5, 25.0,
        )  # fmt: skip
        np.testing.assert_array_equal(record.landmarks_TLC, original.landmarks_TLC)
        indices = np.array([4, 0, 2])
        decoded = np.asarray(
            decode_frames(PixelCodec(), cache.read_frames(video_id, indices)[None])
        )[0]
        frames = np.round((decoded + 1.0) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(frames, faces.read_frames(video_id, indices))
    # What grain workers receive: the path, not an open reader.
    clone = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(clone.read_frames(1, [3]), cache.read_frames(1, [3]))


def test_vae_cache_holds_the_encoder_latents(faces, tmp_path):
    write_random_vae(str(tmp_path / "vae"), config_dict(), seed=1)
    vae = load_diffusers_vae(str(tmp_path / "vae"))
    path = str(tmp_path / "latents.array_record")
    write_latent_cache(
        faces, functools.partial(encode_frames, vae), path, batch_frames=4, progress=False
    )
    cache = LatentCacheSource(path)
    assert cache.image_size == 8 and cache.latent_channels == 4
    frames = faces.read_frames(2, np.arange(5)).astype(np.float32) / 127.5 - 1.0
    direct = np.asarray(encode_frames(vae, frames[None]))[0]
    cached = cache.read_frames(2, np.arange(5))
    np.testing.assert_allclose(cached, direct, rtol=1e-5, atol=1e-6)
    assert np.std(cached) > 0.01
    np.testing.assert_allclose(
        np.asarray(decode_frames(vae, cached[None])),
        np.asarray(decode_frames(vae, direct[None])),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_bad_paths_and_indices_are_named(tmp_path, faces):
    with pytest.raises(FileNotFoundError, match="latent cache not found"):
        LatentCacheSource(str(tmp_path / "missing.array_record"))
    path = str(tmp_path / "c.array_record")
    write_latent_cache(faces, functools.partial(encode_frames, PixelCodec()), path, progress=False)
    with pytest.raises(IndexError, match=r"frame indices must lie in \[0, 5\)"):
        LatentCacheSource(path).read_frames(0, [5])
