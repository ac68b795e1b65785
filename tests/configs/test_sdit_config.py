"""configs/sdit.py: variant strings, the frozen tiny config, literal sharding rules."""

import json
import os
import subprocess
import sys

import pytest

from anchored_jax.parallel.logical_sharding import DEFAULT_RULES, rules_from_config
from configs import sdit

# `configs/sdit.py:tiny` as it was before sizes and recipes were separated (the `sampling`
# section came later and is checked on its own): the demo, docs and tests rely on it.
FROZEN_TINY = {
    "checkpoint": {"async_save": True, "every_steps": 500, "max_to_keep": 3},
    "data": {
        "anchor_position": "anywhere",
        "clip_frames": 4,
        "fps": 25.0,
        "identity_frame": "first",
        "image_size": 32,
        "max_window": 100000,
        "min_window": 4,
        "num_test_identities": 8,
        "num_train_identities": 64,
        "root": "",
        "sampler": "loguniform_gaps",
        "seed": 0,
        "source": "synthetic",
        "vae": "",
        "verify_files": False,
        "video_frames": 1024,
        "videos_per_identity": 4,
        "worker_count": 0,
    },
    "diffusion": {"num_timesteps": 1000, "prediction": "x0", "schedule": "cosine"},
    "logging": {
        "eval_batches": 4,
        "eval_every_steps": 250,
        "log_every_steps": 50,
        "sample_clips": 4,
        "sample_every_steps": 1000,
        "sample_steps": 25,
    },
    "mesh": {
        "dcn": {"data": 1, "fsdp": 1, "sequence": 1, "tensor": 1},
        "ici": {"data": -1, "fsdp": 1, "sequence": 1, "tensor": 1},
        "num_devices": -1,
    },
    "model": {
        "attention": "joint",
        "attention_backend": "xla",
        "depth": 4,
        "dtype": "float32",
        "frame_time_condition": True,
        "identity": "encoder",
        "identity_channels": [64, 128, 256],
        "identity_embed_dim": 768,
        "identity_tokens": False,
        "image_size": 32,
        "in_channels": 3,
        "landmark_condition": True,
        "landmark_dim": 3,
        "landmark_tokens": True,
        "max_frames": 16,
        "mlp_ratio": 4.0,
        "num_classes": 1000,
        "num_heads": 4,
        "num_landmarks": 68,
        "out_channels": 0,
        "param_dtype": "float32",
        "patch_size": 4,
        "remat_policy": "none",
        "scan_layers": True,
        "time_embed_period": 100.0,
        "time_in_tokens": True,
        "width": 128,
    },
    "seed": 0,
    "sharding": {
        "rules": [
            ["batch", ["data", "fsdp"]],
            ["length", "sequence"],
            ["act_embed", None],
            ["layers", None],
            ["embed", "fsdp"],
            ["mlp", "tensor"],
            ["heads", "tensor"],
            ["head_dim", None],
            ["qkv", None],
            ["adaln", "tensor"],
            ["patch", None],
            ["cond_in", None],
            ["kernel_h", None],
            ["kernel_w", None],
            ["conv_in", None],
            ["conv_out", "tensor"],
        ]
    },
    "task": "sdit",
    "training": {
        "b1": 0.9,
        "b2": 0.999,
        "batch_size": 8,
        "ema_decay": 0.995,
        "end_learning_rate_factor": 0.1,
        "grad_clip_norm": 1.0,
        "identity_drop_prob": 0.1,
        "known_anchor_prob": 0.9,
        "landmark_drop_prob": 0.1,
        "learning_rate": 0.001,
        "max_nonfinite_steps": 20,
        "num_steps": 1000,
        "timesteps": "shared",
        "warmup_steps": 100,
        "weight_decay": 0.0,
    },
}

# What `:S` set differently from `:tiny`, captured at the same time (S/B/L/XL share all but
# width, depth and heads).
FROZEN_S_FLIPS = {
    "checkpoint.every_steps": 5000,
    "data.clip_frames": 8,
    "data.identity_frame": "random",
    "data.image_size": 256,
    "data.source": "latents",
    "diffusion.prediction": "epsilon",
    "diffusion.schedule": "linear",
    "logging.eval_every_steps": 5000,
    "logging.sample_every_steps": 20000,
    "model.depth": 12,
    "model.in_channels": 4,
    "model.landmark_tokens": False,
    "model.num_heads": 6,
    "model.patch_size": 2,
    "model.time_embed_period": 600.0,
    "model.width": 384,
    "training.batch_size": 256,
    "training.ema_decay": 0.9999,
    "training.known_anchor_prob": 0.5,
    "training.learning_rate": 0.0001,
    "training.num_steps": 400000,
    "training.warmup_steps": 5000,
}


def _without_sampling(config) -> dict:
    values = json.loads(config.to_json())
    del values["sampling"]
    return values


@pytest.mark.parametrize("arg", ["tiny", "size=tiny", "size=tiny,recipe=x0_cosine", ""])
def test_tiny_is_unchanged(arg):
    assert _without_sampling(sdit.get_config(arg)) == FROZEN_TINY


def test_bare_sizes_keep_their_values():
    values = _without_sampling(sdit.get_config("S"))
    for dotted, value in FROZEN_S_FLIPS.items():
        section, name = dotted.split(".")
        assert values[section][name] == value, dotted
    assert _without_sampling(sdit.get_config("size=S,recipe=eps_linear")) == values


def test_recipe_and_size_are_independent():
    tiny_eps = sdit.get_config("size=tiny,recipe=eps_linear")
    assert (tiny_eps.diffusion.prediction, tiny_eps.diffusion.schedule) == ("epsilon", "linear")
    assert tiny_eps.sampling.num_steps == 20 and tiny_eps.training.known_anchor_prob == 0.5
    # The size's knobs stay: pixels, the CPU budget, clipping for pixels.
    assert tiny_eps.model.in_channels == 3 and tiny_eps.training.batch_size == 8
    assert tiny_eps.sampling.clip_x0 is True and tiny_eps.model.width == 128
    s_x0 = sdit.get_config("recipe=x0_cosine,size=S")
    assert (s_x0.diffusion.prediction, s_x0.model.width, s_x0.model.in_channels) == ("x0", 384, 4)
    assert s_x0.sampling.clip_x0 is False and s_x0.sampling.num_steps == 5


def test_latent_model_size_follows_the_frame_size():
    config = sdit.get_config("B")
    assert config.model.image_size == 32
    config.data.image_size = 512
    assert config.model.image_size == 64


@pytest.mark.parametrize(
    "arg, message",
    [
        ("huge", "config argument size: expected one of ['tiny', 'S', 'B', 'L', 'XL'], got 'huge'"),
        ("size=S,recipe=v_sigmoid", "config argument recipe: expected one of"),
        ("size=S,width=3", "config argument: expected size=SIZE[,recipe=RECIPE]"),
        ("size=S,size=B", "config argument: expected size=SIZE[,recipe=RECIPE]"),
    ],
)
def test_a_bad_variant_is_one_line(arg, message):
    with pytest.raises(ValueError) as error:
        sdit.get_config(arg)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_literal_sharding_rules_are_the_library_defaults():
    for arg in ("tiny", "XL"):
        assert rules_from_config(sdit.get_config(arg).sharding.rules) == DEFAULT_RULES


def test_configs_do_not_import_the_library():
    # A fresh interpreter: importing every config file loads no anchored_jax module.
    code = (
        "import sys, configs.sdit, configs.sweeps; "
        "import configs.sweeps.attention, configs.sweeps.guidance, configs.sweeps.inference, "
        "configs.sweeps.landmarks, configs.sweeps.temporal; "
        "print(sorted(m for m in sys.modules if m.startswith('anchored_jax')))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_sweep_plan_kinds_are_the_library_ones():
    from anchored_jax.sampling.segment_plan import PLAN_KINDS
    from configs import sweeps

    assert sweeps.PLAN_KINDS == PLAN_KINDS
