"""Imported DiT checkpoints sample and export: learned sigma, class-label guidance, x0 clipping."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchored_jax.diffusion import make_schedule
from anchored_jax.interop.dit_import import dit_parity_overrides, import_dit_weights
from anchored_jax.interop.export_serialized import MANIFEST_FILE, export_sampler, make_sampler_fn
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.sampling.denoise_loop import sample
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.sdit_denoiser import make_sdit_denoiser
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.sampling.video_generation import generate_video
from anchored_jax.training.train_state import split_model
from configs.sdit import get_config
from tests.interop.dit_reference import random_dit_state_dict
from tests.models.sdit_testing import new_model

CLASSES = 10
SCHEDULE = make_schedule("linear", 1000)
DIT_SHAPE = dict(patch_size=2, in_channels=4, width=32, depth=2, num_heads=4)


def dit_run_config(**model):
    """A latent run config (S's, DiT's epsilon recipe) shrunk to the random DiT's shape."""
    config = get_config("S")
    config.data.image_size = 64  # model.image_size follows: 64 / 8 = 8
    config.model.update(**DIT_SHAPE, **dit_parity_overrides(CLASSES), **model)
    config.model.update(num_landmarks=5, identity_channels=(8, 16), identity_embed_dim=12)
    return config


def imported(config, seed=1):
    model = new_model(SDiTConfig(**config.model.to_dict()), seed=5)
    report = import_dit_weights(model, random_dit_state_dict(classes=CLASSES, seed=seed))
    return model, report


def _video(model, settings, label=3):
    graphdef, params = split_model(model)
    video, _ = generate_video(
        graphdef, params, SCHEDULE, settings=settings, plan=plan_segments(3, 2, 0),
        prediction="epsilon", landmarks_TLC=np.zeros((3, 5, 3), np.float32),
        frame_times_T=np.zeros(3), identity=np.int32(label),
        source_HWC=np.zeros((8, 8, 4), np.float32), key=jax.random.key(0),
    )  # fmt: skip
    return video


def test_a_learned_sigma_import_samples_with_its_epsilon_channels():
    full, report = imported(dit_run_config(out_channels=8))  # keeps DiT's 2C head
    assert not report.epsilon_half
    cut, report = imported(dit_run_config())  # out_channels 0: the import keeps epsilon
    assert report.epsilon_half
    settings = SamplerSettings(method="independent", num_steps=3, clip_x0=False)
    video = _video(full, settings)
    assert video.shape == (3, 8, 8, 4) and np.all(np.isfinite(video))
    # Sampling the 2C model is sampling its first C channels: the cut model's video.
    np.testing.assert_allclose(video, _video(cut, settings), rtol=1e-4, atol=1e-4)
    assert np.abs(video[1:]).mean() > 0.1


def test_class_label_guidance_is_the_cfg_formula():
    model, _ = imported(dit_run_config())
    x_CKHWC = jax.random.normal(jax.random.key(1), (2, 1, 8, 8, 4))
    t_CK = jnp.array([[900], [300]], jnp.int32)
    cond = dict(times_SK=None, landmarks_SKLC=None, frame_mask_SK=None)  # conditions off
    label = jnp.int32(7)
    guided = make_sdit_denoiser(model, label, SamplerSettings(identity_scale=4.0))(
        x_CKHWC, t_CK, cond
    )
    labels = jnp.full((2,), label)
    conditional = model(x_CKHWC, t_CK, None, None, labels)
    unconditional = model(x_CKHWC, t_CK, None, None, labels, drop_identity_B=jnp.ones(2, bool))
    expected = unconditional + 4.0 * (conditional - unconditional)
    np.testing.assert_allclose(guided, expected, atol=1e-5)
    assert float(jnp.abs(conditional - unconditional).mean()) > 1e-3  # the label matters
    # And a whole video with guidance on: another label, another video.
    settings = SamplerSettings(num_steps=2, identity_scale=4.0, clip_x0=False)
    assert np.abs(_video(model, settings, 3) - _video(model, settings, 4)).mean() > 1e-3


def _sampler_inputs(config, batch=1, frames=2):
    rng = np.random.default_rng(0)
    # Noise scaled up so that x0 estimates leave [-1, 1] and clipping shows.
    noise = 3.0 * rng.standard_normal((batch, frames, 8, 8, 4)).astype(np.float32)
    return {
        "noise_BKHWC": noise,
        "times_BK": np.zeros((batch, frames), np.float32),
        "landmarks_BKLC": np.zeros((batch, frames, 5, 3), np.float32),
        "identity": np.full((batch,), 3, np.int32),
        "known_x0_BKHWC": np.zeros_like(noise),
        "known_mask_BK": np.zeros((batch, frames), bool),
    }


@pytest.mark.parametrize("clip", [False, True])
def test_the_export_samples_a_learned_sigma_import_and_keeps_the_clip_setting(tmp_path, clip):
    config = dit_run_config(out_channels=8)
    config.sampling.clip_x0 = clip
    model, _ = imported(config)
    graphdef, params = split_model(model)
    directory = str(tmp_path / "sampler")
    exported = export_sampler(graphdef, params, config, directory, batch=1, frames=2, num_steps=3)
    with open(os.path.join(directory, MANIFEST_FILE)) as f:
        assert json.load(f)["clip_x0"] is clip
    inputs = _sampler_inputs(config)
    flat = dict(np.load(os.path.join(directory, "params.npz")))
    out = np.asarray(exported.call(flat, inputs))
    direct = np.asarray(jax.jit(make_sampler_fn(graphdef, params, config, 3))(flat, inputs))
    np.testing.assert_allclose(out, direct, atol=1e-5)

    def plain(clip_x0):
        def denoise(x, t_BK):
            return model(x, t_BK, None, None, jnp.full((1,), 3, jnp.int32))

        return np.asarray(
            sample(denoise, SCHEDULE, jnp.asarray(inputs["noise_BKHWC"]), num_steps=3,
                   prediction="epsilon", clip_x0=clip_x0)
        )  # fmt: skip

    np.testing.assert_allclose(out, plain(clip), atol=1e-4)
    assert np.abs(plain(True) - plain(False)).max() > 0.1  # the setting matters here
    assert bool(np.abs(out).max() <= 1.0 + 1e-6) == clip
