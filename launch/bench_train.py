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
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:S.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Batch size; 0 = the config's (capped at 8).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step.")
_PEAK = flags.DEFINE_float("peak_flops", 0.0, "Peak FLOP/s per device for MFU; 0 = known table.")
flags.mark_flags_as_required(["config"])


def random_batch(config, batch_size: int, rng):
    """Inputs with the model's shapes: frames (or latents), sorted times, landmarks, identity."""
    import numpy as np

    m = config.model
    K = config.data.clip_frames
    frames = (batch_size, K, m.image_size, m.image_size, m.in_channels)
    times = np.sort(rng.uniform(0.0, 2.0, (batch_size, K)), axis=1)
    return dict(
        video_BKHWC=rng.standard_normal(frames, dtype=np.float32),
        times_BK=(times - times[:, :1]).astype(np.float32),
        landmarks_BKLC=rng.uniform(0, 1, (batch_size, K, m.num_landmarks, m.landmark_dim)).astype(
            np.float32
        ),
        identity_BHWC=random_identity(m, batch_size, rng),
    )


def random_identity(m, batch_size: int, rng):
    """The identity input of `model.identity`: a source image, a vector or a class label."""
    import numpy as np

    if m.identity == "encoder":
        shape = (batch_size, m.image_size, m.image_size, m.in_channels)
        return rng.standard_normal(shape, dtype=np.float32)
    if m.identity == "embedding":
        return rng.standard_normal((batch_size, m.identity_embed_dim), dtype=np.float32)
    return rng.integers(0, m.num_classes, (batch_size,)).astype(np.int32)


# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets; --peak_flops overrides.
KNOWN_PEAK_FLOPS = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def measure_train_step(config, steps: int) -> dict:
    """Compiles the sharded train step for `config` and times `steps` runs after a warm-up."""
    import jax
    import numpy as np

    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.models.sdit_config import SDiTConfig
    from anchored_jax.parallel.logical_sharding import use_rules
    from anchored_jax.training.sdit_setup import make_sdit_setup
    from anchored_jax.training.train_state import param_count

    model_config = SDiTConfig(**config.model.to_dict())
    batch_size, K = config.training.batch_size, config.data.clip_frames
    setup = make_sdit_setup(config)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        batch = setup.to_device(random_batch(config, batch_size, np.random.default_rng(0)))
        key = jax.random.key(0)
        t0 = time.perf_counter()
        traced = setup.train_step.trace(state, batch, key)
        compiled = traced.lower().compile()
        compile_s = time.perf_counter() - t0
        state, metrics = compiled(state, batch, key)  # Warm-up.
        jax.block_until_ready(metrics)
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            state, metrics = compiled(state, batch, jax.random.fold_in(key, i))
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        step_s = sum(times) / steps
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    tokens_per_frame = (model_config.image_size // model_config.patch_size) ** 2
    return dict(
        setup=setup,
        model_config=model_config,
        jaxpr=traced.jaxpr,
        memory=compiled.memory_analysis(),
        xla_flops=float(cost.get("flops", float("nan"))) if cost else float("nan"),
        compile_s=compile_s,
        step_s=step_s,
        step_s_median=sorted(times)[steps // 2],
        params=param_count(state.params),
        tokens_per_frame=tokens_per_frame,
        tokens_per_s=batch_size * K * tokens_per_frame / step_s,
        flops_per_step=sdit_train_flops_per_example(model_config, K) * batch_size,
        loss=float(metrics["loss"]),
    )


def print_table(rows) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


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
