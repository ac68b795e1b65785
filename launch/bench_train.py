r"""The sDiT train-step benchmark (`python -m launch.benchmark [train]`).

  python -m launch.benchmark --config configs/sdit.py:tiny
  python -m launch.benchmark train --config configs/sdit.py:S --batch_size 2 --steps 3

Measures the jitted train step (forward, backward, AdamW, EMA) on random inputs of the config's
shapes, so the figures are the model's and not the input pipeline's. FLOPs are counted
analytically from the architecture (matmuls and attention, x3 for the backward pass); XLA's own
estimate is printed beside it. Peak memory is what the compiled step asks for
(`jit(...).lower(...).compile().memory_analysis()`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anchored_jax.evaluation.step_timing import (  # noqa: E402
    KNOWN_PEAK_FLOPS,
    measure_train_step,
    print_table,
)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:S.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Batch size; 0 = the config's (capped at 8).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s per device for MFU; 0 = known table.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    import jax

    from anchored_jax.training.config_checks import ConfigError, validate_sdit_config

    config = _CONFIG.value
    batch_size = _BATCH.value or min(config.training.batch_size, 8)
    config.training.batch_size = batch_size
    try:
        validate_sdit_config(config)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    r = measure_train_step(config, _STEPS.value)
    mesh, model_config, memory = r["setup"].mesh, r["model_config"], r["memory"]
    device_kind = jax.devices()[0].device_kind
    peak = _PEAK.value or KNOWN_PEAK_FLOPS.get(device_kind, 0.0)
    achieved = r["flops_per_step"] / r["step_s"]
    # Per device: under SPMD the compiled executable is one device's program.
    peak_bytes = (
        memory.temp_size_in_bytes
        + memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
    )
    K = config.data.clip_frames
    print_table(
        [
            ("model", f"{model_config.width}w x {model_config.depth}d, {model_config.attention}"),
            ("mesh", ", ".join(f"{k}={v}" for k, v in mesh.shape.items())),
            ("devices", f"{mesh.size} x {device_kind}"),
            ("dtype / remat", f"{model_config.dtype} / {model_config.remat_policy}"),
            ("parameters", f"{r['params']:,}"),
            ("batch x frames x tokens/frame", f"{batch_size} x {K} x {r['tokens_per_frame']}"),
            ("compile time (s)", f"{r['compile_s']:.1f}"),
            ("train step (s)", f"{r['step_s']:.4f}"),
            ("train steps/s", f"{1.0 / r['step_s']:.3f}"),
            ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
            ("analytic FLOPs/step", f"{r['flops_per_step']:.3e}"),
            ("XLA FLOPs/step (scan body once)", f"{r['xla_flops']:.3e}"),
            ("achieved FLOP/s (analytic)", f"{achieved:.3e}"),
            ("MFU", f"{achieved / (peak * mesh.size):.1%}" if peak else "n/a (--peak_flops)"),
            ("peak memory per device (MiB)", f"{peak_bytes / 2**20:,.1f}"),
            ("  temporaries (MiB)", f"{memory.temp_size_in_bytes / 2**20:,.1f}"),
            ("  arguments (MiB)", f"{memory.argument_size_in_bytes / 2**20:,.1f}"),
            ("final loss", f"{r['loss']:.4f}"),
        ]
    )
