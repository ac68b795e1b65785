"""Every invalid config of every task stops before any compute with one line naming the field.

Most cases run `validate_config` in-process (fast); a few go through the real CLI
(`python -m launch.train`) and assert the exit code, exactly one stderr line, the field's name
and that no workdir (so no checkpoint) was created.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from anchored_jax.training.config_checks import (
    ConfigError,
    known_fields,
    unknown_field_message,
)
from configs import animator, lmdm, sdit
from data_pipelines.landmark_files import save_landmarks
from data_pipelines.run_config_checks import validate_run_config
from data_pipelines.video_writing import write_video

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = {"sdit": sdit, "animator": animator, "lmdm": lmdm}

# (task, overrides as "section.field" -> value, text the one-line message must contain)
INVALID = [
    # --- sDiT: model, diffusion, sampling of clips, mesh ------------------------------------
    ("sdit", {"model.attention": "diagonal"}, "model.attention: expected one of"),
    ("sdit", {"model.attention_backend": "flash3"}, "model.attention_backend: expected one of"),
    ("sdit", {"model.identity": "face_id"}, "model.identity: expected one of"),
    ("sdit", {"model.dtype": "float8"}, "model.dtype: expected one of"),
    ("sdit", {"model.param_dtype": "int8"}, "model.param_dtype: expected one of"),
    ("sdit", {"model.remat_policy": "some"}, "model.remat_policy: expected one of"),
    ("sdit", {"model.patch_size": 5}, "model.patch_size"),
    ("sdit", {"model.num_heads": 3}, "model.num_heads"),
    ("sdit", {"model.max_frames": 2}, "data.clip_frames"),
    ("sdit", {"model.attention_backend": "cudnn"}, "model.attention_backend: 'cudnn' needs"),
    ("sdit", {"diffusion.schedule": "sigmoid"}, "diffusion.schedule: expected one of"),
    ("sdit", {"diffusion.prediction": "score"}, "diffusion.prediction: expected one of"),
    ("sdit", {"training.timesteps": "random"}, "training.timesteps: expected one of"),
    ("sdit", {"training.batch_size": 0}, "training.batch_size: expected > 0"),
    ("sdit", {"training.num_steps": 0}, "training.num_steps: expected > 0"),
    ("sdit", {"training.identity_drop_prob": 1.5}, "training.identity_drop_prob: expected a pro"),
    ("sdit", {"training.landmark_drop_prob": -0.1}, "training.landmark_drop_prob: expected a pro"),
    ("sdit", {"training.known_anchor_prob": 2.0}, "training.known_anchor_prob: expected a pro"),
    ("sdit", {"training.ema_decay": 1.0}, "training.ema_decay: expected a value in [0, 1)"),
    ("sdit", {"training.max_nonfinite_steps": 0}, "training.max_nonfinite_steps: expected >= 1"),
    ("sdit", {"mesh.ici": dict(data=3, fsdp=1, tensor=1, sequence=1)}, "mesh.ici: axes"),
    ("sdit", {"mesh.ici": dict(data=-1, fsdp=-1, tensor=1, sequence=1)}, "at most one axis"),
    ("sdit", {"mesh.num_devices": 99}, "mesh.num_devices: expected -1 or 1..8"),
    ("sdit", {"training.batch_size": 12}, "training.batch_size: 12 is not divisible by the 8-way"),
    ("sdit", {"sharding.rules": [["embed"]]}, "sharding.rules[0]: expected [logical_name, mesh"),
    # --- sDiT: the optimiser (each of these trained or saved NaN parameters and exited 0) ----
    ("sdit", {"training.learning_rate": -1.0}, "training.learning_rate: expected > 0"),
    ("sdit", {"training.learning_rate": 0.0}, "training.learning_rate: expected > 0"),
    ("sdit", {"training.learning_rate": float("nan")}, "training.learning_rate: expected a fin"),
    ("sdit", {"training.learning_rate": float("inf")}, "training.learning_rate: expected a fin"),
    ("sdit", {"training.ema_decay": float("nan")}, "training.ema_decay: expected a value in"),
    ("sdit", {"training.warmup_steps": -10}, "training.warmup_steps: expected >= 0"),
    ("sdit", {"training.warmup_steps": 5000}, "training.warmup_steps: expected <= training.num"),
    ("sdit", {"training.b1": 1.5}, "training.b1: expected a value in [0.0, 1.0)"),
    ("sdit", {"training.b1": 1.0}, "training.b1: expected a value in [0.0, 1.0)"),
    ("sdit", {"training.b2": -1.0}, "training.b2: expected a value in [0.0, 1.0)"),
    ("sdit", {"training.grad_clip_norm": -1.0}, "training.grad_clip_norm: expected > 0"),
    ("sdit", {"training.grad_clip_norm": 0.0}, "training.grad_clip_norm: expected > 0"),
    ("sdit", {"training.weight_decay": -0.01}, "training.weight_decay: expected >= 0"),
    ("sdit", {"training.end_learning_rate_factor": -1.0}, "training.end_learning_rate_factor"),
    ("sdit", {"training.end_learning_rate_factor": 1.5}, "training.end_learning_rate_factor"),
    # --- sDiT: checkpoints and logging (0 lost the run or crashed after the compute) --------
    ("sdit", {"checkpoint.max_to_keep": 0}, "checkpoint.max_to_keep: expected an integer >= 1"),
    ("sdit", {"checkpoint.every_steps": -5}, "checkpoint.every_steps: expected > 0"),
    ("sdit", {"checkpoint.max_to_keep": -1}, "checkpoint.max_to_keep: expected an integer >= 1"),
    ("sdit", {"logging.sample_every_steps": 0}, "logging.sample_every_steps: expected > 0"),
    ("sdit", {"logging.eval_every_steps": 0}, "logging.eval_every_steps: expected > 0"),
    ("sdit", {"logging.log_every_steps": -1}, "logging.log_every_steps: expected > 0"),
    ("sdit", {"logging.eval_batches": 0}, "logging.eval_batches: expected an integer >= 1"),
    ("sdit", {"logging.sample_steps": 0}, "logging.sample_steps: expected an integer >= 1"),
    ("sdit", {"logging.sample_clips": 0}, "logging.sample_clips: expected an integer >= 1"),
    ("sdit", {"logging.sample_clips": 100}, "logging.sample_clips: expected <= the 8 clips"),
    # --- sDiT: the data section ---------------------------------------------------------------
    ("sdit", {"data.sampler": "every_other"}, "data.sampler: expected one of"),
    ("sdit", {"data.source": "youtube"}, "data.source"),
    ("sdit", {"data.identity_frame": "last"}, "data.identity_frame"),
    ("sdit", {"data.image_size": 16}, "data.image_size"),
    # --- sDiT: unknown fields, with the closest known name -------------------------------------
    ("sdit", {"model.foo": 1}, "model.foo: unknown field of the sdit config"),
    ("sdit", {"model.widht": 64}, "model.widht: unknown field of the sdit config; did you mean "),
    ("sdit", {"training.learning_rat": 1e-3}, "did you mean training.learning_rate?"),
    ("sdit", {"logging.sample_clip": 2}, "did you mean logging.sample_clips?"),
    # --- animator -----------------------------------------------------------------------------
    ("animator", {"training.gen_learning_rate": -1.0}, "training.gen_learning_rate: expected > 0"),
    ("animator", {"training.disc_learning_rate": float("nan")}, "training.disc_learning_rate"),
    ("animator", {"training.b1": 1.0}, "training.b1: expected a value in [0.0, 1.0)"),
    ("animator", {"training.b2": -0.5}, "training.b2: expected a value in [0.0, 1.0)"),
    ("animator", {"training.gen_lr_schedule": "linear"}, "training.gen_lr_schedule: expected one"),
    ("animator", {"training.batch_size": 0}, "training.batch_size: expected an integer >= 1"),
    ("animator", {"training.num_steps": 0}, "training.num_steps: expected an integer >= 1"),
    ("animator", {"losses.l1_weight": -1.0}, "losses.l1_weight: expected >= 0"),
    ("animator", {"losses.perceptual_weight": 1.0}, "losses.vgg19_weights: the perceptual loss"),
    ("animator", {"losses.motion_weight": -1.0}, "losses.motion_weight: expected >= 0"),
    ("animator", {"losses.motion_blur": 0}, "losses.motion_blur: expected an integer >= 1"),
    ("animator", {"losses.random_perceptual_blocks": 6}, "losses.random_perceptual_blocks"),
    (
        "animator",
        {"losses.random_perceptual_scales": 4, "losses.random_perceptual_blocks": 5},
        "losses.random_perceptual_scales: 4 levels with 5 blocks shrink 64-px frames",
    ),
    ("animator", {"logging.eval_videos": 0}, "logging.eval_videos: expected an integer >= 1"),
    ("animator", {"logging.eval_frames": 1}, "logging.eval_frames: expected an integer >= 2"),
    ("animator", {"logging.figure_videos": 9}, "logging.figure_videos: expected <= logging.eval"),
    ("animator", {"logging.log_every_steps": 0}, "logging.log_every_steps: expected an integer"),
    ("animator", {"checkpoint.max_to_keep": 0}, "checkpoint.max_to_keep: expected an integer"),
    ("animator", {"checkpoint.every_steps": 0}, "checkpoint.every_steps: expected an integer"),
    ("animator", {"model.style_dim": 0}, "model.style_dim: expected a positive integer"),
    ("animator", {"model.motion_dim": 600}, "model.motion_dim"),
    ("animator", {"model.init": "xavier"}, "model.init: expected one of"),
    ("animator", {"data.max_pair_gap": -1}, "data.max_pair_gap: expected an integer >= 0"),
    ("animator", {"model.foo": 1}, "model.foo: unknown field of the animator config"),
    ("animator", {"losses.l1_wieght": 1.0}, "did you mean losses.l1_weight?"),
    # --- LMDM ---------------------------------------------------------------------------------
    ("lmdm", {"training.learning_rate": 0.0}, "training.learning_rate: expected > 0"),
    ("lmdm", {"training.learning_rate": float("nan")}, "training.learning_rate: expected a fin"),
    ("lmdm", {"training.warmup_steps": 7000}, "training.warmup_steps: expected <= training.num"),
    ("lmdm", {"training.b1": 1.5}, "training.b1: expected a value in [0.0, 1.0)"),
    ("lmdm", {"training.grad_clip_norm": 0.0}, "training.grad_clip_norm: expected > 0"),
    ("lmdm", {"training.weight_decay": -1.0}, "training.weight_decay: expected >= 0"),
    ("lmdm", {"training.end_learning_rate_factor": 1.5}, "training.end_learning_rate_factor"),
    ("lmdm", {"training.ema_decay": 1.0}, "training.ema_decay: expected a value in [0.0, 1.0)"),
    ("lmdm", {"training.batch_size": 0}, "training.batch_size: expected an integer >= 1"),
    ("lmdm", {"diffusion.condition_dropout": 1.0}, "diffusion.condition_dropout: expected a val"),
    ("lmdm", {"diffusion.sample_steps": 0}, "diffusion.sample_steps: expected an integer >= 1"),
    ("lmdm", {"diffusion.prediction": "score"}, "diffusion.prediction: expected one of"),
    ("lmdm", {"diffusion.schedule": "sigmoid"}, "diffusion.schedule: expected one of"),
    ("lmdm", {"data.code_source": "video"}, "data.code_source: expected one of"),
    ("lmdm", {"data.animator_workdir": ""}, "data.animator_workdir: code_source=animator"),
    ("lmdm", {"data.video_frames": 8}, "data.video_frames: expected >= model.length (16)"),
    ("lmdm", {"logging.chain_frames": 1}, "logging.chain_frames: expected an integer >= 2"),
    ("lmdm", {"logging.eval_sequences": 0}, "logging.eval_sequences: expected an integer >= 1"),
    ("lmdm", {"checkpoint.max_to_keep": 0}, "checkpoint.max_to_keep: expected an integer >= 1"),
    ("lmdm", {"model.length": 1}, "model.length: expected >= 2"),
    ("lmdm", {"model.architecture": "rnn"}, "model.architecture: expected one of"),
    ("lmdm", {"model.num_heads": 5}, "model.num_heads: expected a divisor of model.width"),
    ("lmdm", {"model.foo": 1}, "model.foo: unknown field of the lmdm config"),
    ("lmdm", {"diffusion.sample_step": 10}, "did you mean diffusion.sample_steps?"),
    # --- any task -----------------------------------------------------------------------------
    ("sdit", {"task": "gan"}, "task: expected one of ['sdit', 'animator', 'lmdm']"),
]


def configured(task: str, overrides: dict):
    config = CONFIGS[task].get_config("tiny")
    for path, value in overrides.items():
        *parents, field = path.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[field] = value
    return config


def _id(case):
    task, overrides, _ = case
    return f"{task}:{','.join(f'{k}={v}' for k, v in overrides.items())}"


def test_the_table_has_at_least_60_cases_across_the_three_models():
    tasks = [task for task, _, _ in INVALID]
    assert len(INVALID) >= 60 and {tasks.count(t) >= 20 for t in CONFIGS} == {True}


@pytest.mark.parametrize("task, overrides, expected", INVALID, ids=[_id(c) for c in INVALID])
def test_invalid_config_is_one_line_naming_the_field(task, overrides, expected):
    with pytest.raises(ConfigError) as error:
        validate_run_config(configured(task, overrides), check_data=False)
    message = str(error.value)
    assert "\n" not in message and expected in message, message
    field = next(iter(overrides))
    if field != "task" and "mesh" not in field and "sharding" not in field:
        # The message names the field itself, or (for cross-field checks) the field it clashes
        # with; either way it starts with a config path.
        assert message.split(":")[0].count(".") >= 1, message


def test_the_shipped_configs_are_valid():
    for task, module in CONFIGS.items():
        for variant in sorted(known_variants(module)):
            config = module.get_config(variant)
            if task == "sdit":
                config.training.batch_size = 8 * 4  # divisible by the 8 simulated devices
                if variant != "tiny":  # S/B/L/XL read a latent cache, checked on reading
                    config.data.root = "/data/latents"
            if task == "animator" and config.losses.perceptual_weight > 0:
                config.losses.vgg19_weights = "/data/vgg19.safetensors"
            validate_run_config(config, check_data=False)


def known_variants(module):
    return getattr(module, "_SIZES", None) or module._VARIANTS


def test_the_closest_name_is_offered_among_siblings():
    message = unknown_field_message("model.num_landmark", known_fields("sdit"), "sdit")
    assert message.endswith("did you mean model.num_landmarks?"), message


# --- checks against the data: the first record and the LMDM's animator ------------------------


def _landmark_video_dir(root: str, points: int) -> str:
    """A video_dir dataset whose landmark files have `points` points per frame (MediaPipe: 468)."""
    rng = np.random.default_rng(0)
    layout = {468: "mediapipe468", 68: "synthetic68"}[points]
    for split in ("train", "test"):
        os.makedirs(os.path.join(root, split, "id0"), exist_ok=True)
        video = os.path.join(root, split, "id0", "clip.mp4")
        write_video(video, rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8), 25.0)
        landmarks = rng.uniform(0.2, 0.8, (12, points, 3)).astype(np.float32)
        save_landmarks(os.path.join(root, split, "id0", "clip.npz"), landmarks, 25.0, layout)
    return root


def _video_dir_config(root: str):
    return configured("sdit", {"data.source": "video_dir", "data.root": root})


def test_468_point_data_with_the_68_point_model_is_refused_from_the_first_record(tmp_path):
    config = _video_dir_config(_landmark_video_dir(str(tmp_path), 468))
    with pytest.raises(ConfigError) as error:
        validate_run_config(config)
    message = str(error.value)
    assert "\n" not in message and message.startswith("model.num_landmarks:"), message
    assert "has 468 landmarks per frame, got 68" in message
    config.model.num_landmarks = 468  # what the message asks for is accepted
    validate_run_config(config)


def test_lmdm_motion_dim_must_match_its_animator(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {"motion_dim": 20}}))
    config = configured(
        "lmdm",
        {
            "model.motion_dim": 7,
            "data.code_source": "animator",
            "data.animator_workdir": str(tmp_path),
        },
    )
    with pytest.raises(ConfigError, match=r"^model\.motion_dim: the animator .* makes 20-d"):
        validate_run_config(config)
    config.model.motion_dim = 20
    validate_run_config(config)


def test_lmdm_code_cache_of_another_width_is_refused(tmp_path):
    cache = tmp_path / "codes.npz"
    np.savez(cache, codes=np.zeros((2, 16, 12), np.float32))
    config = configured("lmdm", {"data.code_source": "landmarks", "data.code_file": str(cache)})
    with pytest.raises(ConfigError, match=r"^model\.motion_dim: the code cache .* 12-d codes"):
        validate_run_config(config)


# --- through the real CLI ----------------------------------------------------------------------

CLI_CASES = [
    ("sdit", ["--config.checkpoint.max_to_keep=0"], "checkpoint.max_to_keep"),
    ("sdit", ["--config.training.learning_rate=nan"], "training.learning_rate"),
    ("sdit", ["--config.model.foo=1"], "model.foo"),  # refused at flag parsing
    ("sdit", ["--config.training.num_steps=abc"], "training.num_steps"),  # a wrong type
    ("animator", ["--config.training.b1=1.5"], "training.b1"),
    ("lmdm", ["--config.logging.chain_frames=1"], "logging.chain_frames"),
]


def _run_train(task: str, extra: list[str], workdir: str):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    return subprocess.run(
        [sys.executable, "-m", "launch.train", f"--config=configs/{task}.py:tiny"]
        + extra
        + [f"--workdir={workdir}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("task, extra, field", CLI_CASES, ids=[" ".join(c[1]) for c in CLI_CASES])
def test_cli_refuses_a_bad_config_in_one_line_before_any_compute(tmp_path, task, extra, field):
    workdir = tmp_path / "run"
    result = _run_train(task, extra, str(workdir))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {field}:"), lines[0]
    assert not workdir.exists()  # no checkpoint, not even the folder


def test_cli_refuses_468_point_data_with_the_68_point_model(tmp_path):
    root = _landmark_video_dir(str(tmp_path / "data"), 468)
    workdir = tmp_path / "run"
    extra = ["--config.data.source=video_dir", f"--config.data.root={root}"]
    result = _run_train("sdit", extra, str(workdir))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: model.num_landmarks:") and "468" in lines[0], lines[0]
    assert not workdir.exists()
