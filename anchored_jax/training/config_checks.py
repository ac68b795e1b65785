"""Checks a run's config before anything expensive starts: every model, every field, one place.

`validate_config` covers all three tasks (`task` = sdit | animator | lmdm): unknown fields
(against the task's shipped config, with the closest known name), model shapes, optimiser
ranges, checkpoint and logging counts that would lose work at 0. The data section and what only
reading the data can tell are `data_pipelines.run_config_checks`'s. Each problem
is one `ConfigError` line naming the field and what was expected, so a typo in a sweep fails in
a second instead of after compilation, and never as a traceback wall.

`parse_flags_or_exit` is the launcher-side half: absl and ml_collections flag errors (a wrong
type, an unknown override, a config file that does not load) become one `error:` line too.
"""

import difflib
import importlib.util
import math
import os
import re
import sys
import tempfile

import ml_collections

PREDICTIONS = ("epsilon", "v", "x0")
TASKS = ("sdit", "animator", "lmdm")
GEN_LR_SCHEDULES = ("constant", "cosine")  # leo_animator_step.make_optimizers reads these


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the field."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(value, field: str, choices) -> None:
    _expect(value in choices, f"{field}: expected one of {list(choices)}, got {value!r}")


def _number(config: ml_collections.ConfigDict, path: str):
    """The value at `section.field`, refused unless it is a real number (not a bool or str)."""
    value = config
    for part in path.split("."):
        value = value[part]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _expect(is_number, f"{path}: expected a number, got {value!r}")
    _expect(math.isfinite(value), f"{path}: expected a finite number, got {value}")
    return value


def _at_least(config, path: str, low, why: str = "") -> None:
    value = _number(config, path)
    _expect(value >= low, f"{path}: expected >= {low}{why}, got {value}")


def _in_range(config, path: str, low, high, closed_high: bool) -> None:
    value = _number(config, path)
    ok = low <= value <= high if closed_high else low <= value < high
    bracket = "]" if closed_high else ")"
    _expect(ok, f"{path}: expected a value in [{low}, {high}{bracket}, got {value}")


# --- unknown fields ----------------------------------------------------------------------------


def _task_variants(task: str):
    """The task's config module and its variant names (the shipped defaults)."""
    # configs/ is plain data; it is read here so that every refusal comes from one module.
    module = importlib.import_module(f"configs.{task}")
    variants = getattr(module, "_SIZES", None) or getattr(module, "_VARIANTS", {})
    return module, list(variants)


def _leaf_paths(config, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out[path] = value
            out.update(_leaf_paths(value, path + "."))
        else:
            out[path] = value
    return out


def known_fields(task: str) -> set[str]:
    """Every `section.field` path of any variant of the task's shipped config."""
    module, variants = _task_variants(task)
    paths = set()
    for variant in variants:
        paths |= set(_leaf_paths(module.get_config(variant)))
    if task == "sdit":  # optional data fields with defaults (data_pipelines.pipeline)
        paths |= {"data.root", "data.verify_files", "data.vae"}
    return paths


def unknown_field_message(path: str, known: set[str], task: str) -> str:
    """`<path>: unknown field ...; did you mean <closest>?` among the siblings of `path`."""
    parent = path.rpartition(".")[0]
    siblings = sorted(p for p in known if p.rpartition(".")[0] == parent)
    close = difflib.get_close_matches(path, siblings, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(path, sorted(known), n=1, cutoff=0.6)
    hint = (
        f"did you mean {close[0]}?"
        if close
        else f"known fields of {parent or 'the config'}: "
        + ", ".join(s.rpartition(".")[2] for s in siblings)
    )
    return f"{path}: unknown field of the {task} config; {hint}"


def check_known_fields(config: ml_collections.ConfigDict, task: str) -> None:
    known = known_fields(task)
    for path in sorted(_leaf_paths(config)):
        if path not in known:
            raise ConfigError(unknown_field_message(path, known, task))


# --- shared sections -------------------------------------------------------------------------


def _check_adam(config, lr_fields: tuple[str, ...]) -> None:
    """Learning rates, betas and the warm-up/decay/clip/decay fields a task's optimiser reads."""
    training = config.training
    for name in lr_fields:
        value = _number(config, f"training.{name}")
        _expect(value > 0, f"training.{name}: expected > 0, got {value}")
    for name in ("b1", "b2"):
        _in_range(config, f"training.{name}", 0.0, 1.0, closed_high=False)
    if "warmup_steps" in training:
        _at_least(config, "training.warmup_steps", 0)
        _expect(
            training.warmup_steps <= training.num_steps,
            f"training.warmup_steps: expected <= training.num_steps ({training.num_steps}), "
            f"got {training.warmup_steps}",
        )
    if "end_learning_rate_factor" in training:
        _in_range(config, "training.end_learning_rate_factor", 0.0, 1.0, closed_high=True)
    if "weight_decay" in training:
        _at_least(config, "training.weight_decay", 0)
    if "grad_clip_norm" in training:
        value = _number(config, "training.grad_clip_norm")
        _expect(value > 0, f"training.grad_clip_norm: expected > 0, got {value}")
    if "ema_decay" in training:
        _in_range(config, "training.ema_decay", 0.0, 1.0, closed_high=False)


def _check_counts(config, paths: tuple[str, ...], low: int = 1) -> None:
    for path in paths:
        value = _number(config, path)
        _expect(
            isinstance(value, int) and value >= low,
            f"{path}: expected an integer >= {low}, got {value!r}",
        )


def _check_checkpoint(config) -> None:
    # max_to_keep=0 keeps nothing: the whole run would end with an empty checkpoints/.
    _check_counts(config, ("checkpoint.every_steps", "checkpoint.max_to_keep"))
    _expect(
        isinstance(config.checkpoint.async_save, bool),
        f"checkpoint.async_save: expected True or False, got {config.checkpoint.async_save!r}",
    )


# --- sDiT -------------------------------------------------------------------------------------


def validate_sdit_config(config: ml_collections.ConfigDict):
    """Validates the model, diffusion, training, checkpoint and logging sections of an sDiT
    config (no I/O); returns the model config."""
    # Imported on use: a launcher imports this module for its flag parser, before JAX loads.
    import jax  # noqa: PLC0415

    from anchored_jax.diffusion.schedules import make_schedule  # noqa: PLC0415
    from anchored_jax.models.sdit_config import SDiTConfig  # noqa: PLC0415
    from anchored_jax.parallel.logical_sharding import rules_from_config  # noqa: PLC0415
    from anchored_jax.parallel.mesh import build_mesh, data_parallel_size  # noqa: PLC0415
    from anchored_jax.training.sdit_step import TIMESTEP_MODES  # noqa: PLC0415

    try:
        model_config = SDiTConfig(**config.model.to_dict())
        make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _choice(config.diffusion.prediction, "diffusion.prediction", PREDICTIONS)
    training = config.training
    _choice(training.timesteps, "training.timesteps", TIMESTEP_MODES)
    _expect(
        training.batch_size > 0, f"training.batch_size: expected > 0, got {training.batch_size}"
    )
    _expect(training.num_steps > 0, f"training.num_steps: expected > 0, got {training.num_steps}")
    _expect(
        training.max_nonfinite_steps >= 1,
        f"training.max_nonfinite_steps: expected >= 1, got {training.max_nonfinite_steps}",
    )
    for name in ("identity_drop_prob", "landmark_drop_prob", "known_anchor_prob"):
        p = training[name]
        _expect(0.0 <= p <= 1.0, f"training.{name}: expected a probability in [0, 1], got {p}")
    _expect(
        0.0 <= training.ema_decay < 1.0,
        f"training.ema_decay: expected a value in [0, 1), got {training.ema_decay}",
    )
    _check_adam(config, ("learning_rate",))
    data = config.data
    _expect(
        data.clip_frames <= model_config.max_frames,
        f"data.clip_frames: K={data.clip_frames} is larger than "
        f"model.max_frames={model_config.max_frames}",
    )
    # Pixel sources: the model sees the frames themselves. A latent cache's shape is checked
    # against the model where the cache is read (data_pipelines.pipeline.check_model_fits_data).
    if data.source != "latents":
        _expect(
            model_config.in_channels == 3,
            f"model.in_channels: data.source {data.source!r} gives 3-channel pixel frames, got "
            f"{model_config.in_channels} (VAE latents are read with data.source='latents')",
        )
        _expect(
            data.image_size == model_config.image_size,
            f"model.image_size: pixel models need data.image_size ({data.image_size}), "
            f"got {model_config.image_size}",
        )
    for name in ("log_every_steps", "eval_every_steps", "sample_every_steps"):
        _expect(
            config.logging[name] > 0, f"logging.{name}: expected > 0, got {config.logging[name]}"
        )
    _expect(
        config.checkpoint.every_steps > 0,
        f"checkpoint.every_steps: expected > 0, got {config.checkpoint.every_steps}",
    )
    _check_checkpoint(config)
    # 0 held-out batches or 0 sampling steps would crash at the first evaluation or the final
    # sample grid, after the compute and before the last checkpoint.
    _check_counts(config, ("logging.eval_batches", "logging.sample_steps", "logging.sample_clips"))
    try:
        mesh = build_mesh(config.mesh)
        rules_from_config(config.sharding.rules)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ways = data_parallel_size(mesh)
    _expect(
        training.batch_size % ways == 0,
        f"training.batch_size: {training.batch_size} is not divisible by the {ways}-way "
        "data parallelism of mesh.ici (data x fsdp)",
    )
    local_batch = training.batch_size // jax.process_count()
    # The sample grid takes its clips from this process's first held-out batch.
    _expect(
        config.logging.sample_clips <= local_batch,
        f"logging.sample_clips: expected <= the {local_batch} clips of a held-out batch "
        f"(training.batch_size per process), got {config.logging.sample_clips}",
    )
    return model_config


# --- LEO animator -----------------------------------------------------------------------------


def validate_animator_config(config: ml_collections.ConfigDict) -> None:
    """The animator's model, losses, optimiser, checkpoint and logging fields (no I/O)."""
    from anchored_jax.models.leo_animator_config import AnimatorConfig  # noqa: PLC0415

    try:
        model = AnimatorConfig(**config.model.to_dict())
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _expect(
        config.data.image_size == model.image_size,
        f"model.image_size: expected data.image_size ({config.data.image_size}), "
        f"got {model.image_size}",
    )
    training, losses = config.training, config.losses
    _check_counts(config, ("training.batch_size", "training.num_steps"))
    _check_adam(config, ("gen_learning_rate", "disc_learning_rate"))
    _choice(
        training.get("gen_lr_schedule", "constant"), "training.gen_lr_schedule", GEN_LR_SCHEDULES
    )
    for name in (
        "l1_weight",
        "perceptual_weight",
        "gan_weight",
        "r1_weight",
        "motion_weight",
        "l2_weight",
        "landmark_weight",
        "keypoint_weight",
    ):
        _at_least(config, f"losses.{name}", 0)
    _check_counts(config, ("losses.motion_blur",))
    if losses.get("landmark_weight", 0.0) > 0:
        _at_least(config, "losses.landmark_sigma", 0.1, " pixels")
        from anchored_jax.training.leo_losses import ibug68_indices  # jax: only when used

        try:
            ibug68_indices(losses.landmark_parts, "losses.landmark_parts")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if losses.get("keypoint_weight", 0.0) > 0:
        _expect(
            config.data.source == "synthetic",
            "losses.keypoint_weight: the keypoint loss's landmark regressor is trained on the "
            f"synthetic faces; expected data.source='synthetic', got {config.data.source!r} "
            "(or set losses.keypoint_weight=0)",
        )
        _check_counts(config, ("losses.keypoint_regressor_seed",), low=0)
        from anchored_jax.training.leo_losses import ibug68_indices  # jax: only when used

        try:
            ibug68_indices(losses.keypoint_parts, "losses.keypoint_parts")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    _at_least(config, "losses.random_perceptual_weight", 0)
    _check_counts(config, ("losses.random_perceptual_width_divisor",))
    _in_range(config, "losses.random_perceptual_blocks", 1, 5, closed_high=True)
    # Each level halves the frame and each block past the first max-pools it: keep >= 1 pixel.
    levels = losses.random_perceptual_scales + losses.random_perceptual_blocks - 2
    _check_counts(config, ("losses.random_perceptual_scales",))
    _expect(
        config.data.image_size >> levels >= 1,
        f"losses.random_perceptual_scales: {losses.random_perceptual_scales} levels with "
        f"{losses.random_perceptual_blocks} blocks shrink {config.data.image_size}-px frames "
        "below one pixel; use fewer",
    )
    _expect(
        not (losses.perceptual_weight > 0 and not losses.vgg19_weights),
        "losses.vgg19_weights: the perceptual loss needs a torchvision VGG19 state dict "
        "(.safetensors or .pth); set a path, or losses.perceptual_weight=0",
    )
    _check_counts(config, ("logging.log_every_steps", "logging.eval_every_steps"))
    _check_counts(config, ("logging.eval_videos", "logging.figure_videos"))
    # Frame 0 of a held-out video is the source: one frame leaves nothing to reconstruct.
    _check_counts(config, ("logging.eval_frames",), low=2)
    _expect(
        config.logging.figure_videos <= config.logging.eval_videos,
        f"logging.figure_videos: expected <= logging.eval_videos ({config.logging.eval_videos}), "
        f"got {config.logging.figure_videos}",
    )
    _check_counts(config, ("data.max_pair_gap",), low=0)
    _check_checkpoint(config)


# --- LEO LMDM ---------------------------------------------------------------------------------


def validate_lmdm_config(config: ml_collections.ConfigDict) -> None:
    """The LMDM's model, diffusion, optimiser, data windows, checkpoint and logging (no I/O)."""
    from anchored_jax.diffusion.objectives import LOSS_WEIGHTINGS  # noqa: PLC0415
    from anchored_jax.diffusion.schedules import make_schedule  # noqa: PLC0415
    from anchored_jax.models.leo_lmdm import LmdmConfig  # noqa: PLC0415

    try:
        LmdmConfig(**config.model.to_dict())
        make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    diffusion, data = config.diffusion, config.data
    _choice(diffusion.prediction, "diffusion.prediction", PREDICTIONS)
    _check_counts(config, ("training.batch_size", "training.num_steps"))
    _check_adam(config, ("learning_rate",))
    _in_range(config, "diffusion.condition_dropout", 0.0, 1.0, closed_high=False)
    _choice(diffusion.loss_weighting, "diffusion.loss_weighting", LOSS_WEIGHTINGS)
    gamma = _number(config, "diffusion.min_snr_gamma")
    _expect(gamma > 0, f"diffusion.min_snr_gamma: expected a cap > 0, got {gamma}")
    _check_counts(config, ("diffusion.sample_steps",))
    _in_range(config, "diffusion.guidance_scale", 0.0, 10.0, closed_high=True)
    _choice(data.code_source, "data.code_source", ("landmarks", "animator"))
    _expect(
        data.code_source != "animator" or bool(data.animator_workdir),
        "data.animator_workdir: code_source=animator needs an animator run's workdir",
    )
    _expect(
        data.source != "synthetic" or data.video_frames >= config.model.length,
        f"data.video_frames: expected >= model.length ({config.model.length}) so each video "
        f"gives a window, got {data.video_frames}",
    )
    for name in ("log_every_steps", "eval_sequences", "chain_sequences"):
        _check_counts(config, (f"logging.{name}",))
    _check_counts(config, ("logging.chain_frames",), low=2)
    _check_checkpoint(config)


_VALIDATORS = {
    "sdit": validate_sdit_config,
    "animator": validate_animator_config,
    "lmdm": validate_lmdm_config,
}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Every check of a run's config that needs no data, for any task; raises one `ConfigError`
    line. The data's own fields and what only reading the data can tell (the first record's
    landmark count, an LMDM's animator and code cache) are checked by
    `data_pipelines.run_config_checks.validate_run_config`, which calls this first."""
    task = config.get("task", "sdit")
    _choice(task, "task", TASKS)
    check_known_fields(config, task)
    try:
        _VALIDATORS[task](config)
    except (KeyError, AttributeError) as e:  # a field the task needs was deleted
        raise ConfigError(f"{task} config: missing field {e}") from None


# --- the workdir and the command line -----------------------------------------------------------


def ensure_writable_workdir(workdir: str) -> str:
    """Creates the workdir if needed and proves a file can be written there."""
    _expect(bool(workdir), "--workdir: expected a directory path, got an empty string")
    path = os.path.abspath(workdir)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_probe_"):
            pass
    except OSError as e:
        raise ConfigError(f"--workdir: cannot write to {path} ({e.strerror or e})") from None
    return path


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """`configs/x.py[:arg]` -> its `get_config(arg)`, as ml_collections' config flag loads it."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: expected a config file such as configs/sdit.py, got {path!r}")
    module_spec = importlib.util.spec_from_file_location("_checked_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    except Exception as e:  # noqa: BLE001  (any failure of user code is reported as one line)
        reason = str(e).splitlines()[0] if str(e) else repr(e)
        raise ConfigError(f"--config: {path}: {reason}") from None


_OVERRIDE = re.compile(r"^--config\.([\w.]+)(?:=.*)?$")
_FLAG_VALUE_ERROR = re.compile(r"flag --config\.([\w.]+)=(.*?): (.*)", re.DOTALL)


def check_config_overrides(argv: list[str], flag_name: str = "config") -> None:
    """Loads the config file once (a bad path or variant is one line) and refuses
    `--config.<path>=...` overrides of fields it does not have."""
    spec = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag_name}="):
            spec = arg.split("=", 1)[1]
        elif arg == f"--{flag_name}" and i + 1 < len(argv):
            spec = argv[i + 1]
    overrides = [m.group(1) for a in argv if (m := _OVERRIDE.match(a))]
    if spec is None:
        return  # absl reports the missing required flag
    config = load_config_file(spec)
    known = _leaf_paths(config)
    for path in overrides:
        if path not in known:
            raise ConfigError(unknown_field_message(path, set(known), config.get("task", "sdit")))


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return " ".join(lines)


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl `flags_parser` for `app.run`: parses the flags, or exits with one `error:` line."""
    import logging  # noqa: PLC0415

    from absl import flags  # noqa: PLC0415

    # JAX logs at INFO that it found no TPU; under absl that line would precede a refusal.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    try:
        check_config_overrides(argv)
        return flags.FLAGS(argv)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    except flags.Error as e:
        text = str(e)
        m = _FLAG_VALUE_ERROR.match(text)
        if m:
            field, value, reason = m.groups()
            sys.exit(f"error: {field}: cannot use {value!r} ({_one_line(reason)})")
        sys.exit(f"error: {_one_line(text)}")
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # ml_collections overrides
        sys.exit(f"error: {_one_line(e) or type(e).__name__}")
