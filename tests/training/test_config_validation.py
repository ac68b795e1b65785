"""Every invalid config stops before any compute with one line naming the field."""

import pytest

from anchored_jax.training.config_checks import ConfigError, validate_sdit_config
from configs import sdit
from data_pipelines.pipeline import validate_data_config

# (overrides as "section.field" -> value, text the one-line message must contain)
INVALID = [
    ({"model.attention": "diagonal"}, "model.attention: expected one of"),
    ({"model.attention_backend": "flash3"}, "model.attention_backend: expected one of"),
    ({"model.identity": "face_id"}, "model.identity: expected one of"),
    ({"model.dtype": "float8"}, "model.dtype: expected one of"),
    ({"model.param_dtype": "int8"}, "model.param_dtype: expected one of"),
    ({"model.remat_policy": "some"}, "model.remat_policy: expected one of"),
    ({"model.patch_size": 5}, "model.patch_size"),
    ({"model.num_heads": 3}, "model.num_heads"),
    ({"model.max_frames": 2}, "data.clip_frames"),
    ({"logging.sample_every_steps": 0}, "logging.sample_every_steps: expected > 0"),
    ({"model.attention_backend": "cudnn"}, "model.attention_backend: 'cudnn' needs"),
    ({"diffusion.schedule": "sigmoid"}, "diffusion.schedule: expected one of"),
    ({"diffusion.prediction": "score"}, "diffusion.prediction: expected one of"),
    ({"training.timesteps": "random"}, "training.timesteps: expected one of"),
    ({"training.batch_size": 0}, "training.batch_size: expected > 0"),
    ({"training.num_steps": 0}, "training.num_steps: expected > 0"),
    ({"training.identity_drop_prob": 1.5}, "training.identity_drop_prob: expected a probability"),
    ({"training.landmark_drop_prob": -0.1}, "training.landmark_drop_prob: expected a probability"),
    ({"training.known_anchor_prob": 2.0}, "training.known_anchor_prob: expected a probability"),
    ({"training.ema_decay": 1.0}, "training.ema_decay: expected a value in [0, 1)"),
    ({"training.max_nonfinite_steps": 0}, "training.max_nonfinite_steps: expected >= 1"),
    ({"logging.eval_every_steps": 0}, "logging.eval_every_steps: expected > 0"),
    ({"checkpoint.every_steps": -5}, "checkpoint.every_steps: expected > 0"),
    ({"mesh.ici": dict(data=3, fsdp=1, tensor=1, sequence=1)}, "mesh.ici: axes"),
    ({"mesh.ici": dict(data=-1, fsdp=-1, tensor=1, sequence=1)}, "at most one axis may be -1"),
    ({"mesh.num_devices": 99}, "mesh.num_devices: expected -1 or 1..8"),
    ({"training.batch_size": 12}, "training.batch_size: 12 is not divisible by the 8-way"),
    ({"sharding.rules": [["embed"]]}, "sharding.rules[0]: expected [logical_name, mesh_axes]"),
]

INVALID_DATA = [
    ({"data.sampler": "every_other"}, "data.sampler: expected one of"),
    ({"data.source": "youtube"}, "data.source"),
    ({"data.identity_frame": "last"}, "data.identity_frame"),
    ({"data.image_size": 16}, "data.image_size"),
]


def configured(overrides):
    config = sdit.get_config("tiny")
    for path, value in overrides.items():
        section, field = path.split(".")
        config[section][field] = value
    return config


@pytest.mark.parametrize("overrides, expected", INVALID, ids=[e for _, e in INVALID])
def test_invalid_config_is_one_line_naming_the_field(overrides, expected):
    with pytest.raises(ConfigError) as error:
        validate_sdit_config(configured(overrides))
    message = str(error.value)
    assert "\n" not in message and expected in message, message


@pytest.mark.parametrize("overrides, expected", INVALID_DATA, ids=[e for _, e in INVALID_DATA])
def test_invalid_data_config_is_one_line_naming_the_field(overrides, expected):
    with pytest.raises(ValueError) as error:
        validate_data_config(configured(overrides).data)
    message = str(error.value)
    assert "\n" not in message and expected in message, message


def test_the_shipped_configs_are_valid():
    for size in ("tiny", "S", "B", "L", "XL"):
        config = sdit.get_config(size)
        config.training.batch_size = 8 * 4  # divisible by the 8 simulated devices
        if size != "tiny":  # S/B/L/XL read a latent cache; its contents are checked on reading
            config.data.root = "/data/latents"
        validate_sdit_config(config)
        validate_data_config(config.data)
