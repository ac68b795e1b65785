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
        identity_BHWC=rng.standard_normal(frames[:1] + frames[2:], dtype=np.float32)
        if m.identity == "encoder"
        else rng.standard_normal((batch_size, m.identity_embed_dim), dtype=np.float32),
    )


def main(argv):
    del argv
    import jax
    import numpy as np
    from flax import nnx

    from anchored_jax.diffusion.schedules import make_schedule
    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.training.config_checks import ConfigError, validate_sdit_config
    from anchored_jax.training.optimizer import learning_rate_schedule, make_optimizer
    from anchored_jax.training.sdit_step import make_train_step
    from anchored_jax.training.train_state import create_train_state, param_count, split_model
    from anchored_jax.training.trainer import build_model

    config = _CONFIG.value
    try:
        model_config = validate_sdit_config(config)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    batch_size = _BATCH.value or min(config.training.batch_size, 8)
    K = config.data.clip_frames

    tx = make_optimizer(config.training)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    graphdef, _ = split_model(nnx.eval_shape(lambda: build_model(config, 0)))

    def init_state():
        return create_train_state(split_model(build_model(config, 0))[1], tx)

    state = jax.jit(init_state)()
    step_fn = jax.jit(
        make_train_step(graphdef, tx, schedule, config, learning_rate_schedule(config.training)),
        donate_argnums=(0,),
    )
    batch = jax.device_put(random_batch(config, batch_size, np.random.default_rng(0)))
    key = jax.random.key(0)

    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    state, metrics = compiled(state, batch, key)  # Warm-up.
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for i in range(_STEPS.value):
        state, metrics = compiled(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / _STEPS.value

    tokens_per_frame = (model_config.image_size // model_config.patch_size) ** 2
    flops_per_step = sdit_train_flops_per_example(model_config, K) * batch_size
    peak_bytes = (
        memory.temp_size_in_bytes
        + memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
    )
    rows = [
        (
            "config",
            f"{_CONFIG.value.model.width}w x {model_config.depth}d, {model_config.attention}",
        ),
        ("devices", f"{jax.device_count()} x {jax.devices()[0].device_kind}"),
        ("parameters", f"{param_count(state.params):,}"),
        ("batch x frames x tokens/frame", f"{batch_size} x {K} x {tokens_per_frame}"),
        ("compile time (s)", f"{compile_s:.1f}"),
        ("train step (s)", f"{step_s:.4f}"),
        ("train steps/s", f"{1.0 / step_s:.3f}"),
        ("tokens/s", f"{batch_size * K * tokens_per_frame / step_s:,.0f}"),
        ("analytic FLOPs/step", f"{flops_per_step:.3e}"),
        ("XLA-estimated FLOPs/step", f"{xla_flops:.3e}"),
        ("achieved FLOP/s (analytic)", f"{flops_per_step / step_s:.3e}"),
        ("peak compiled memory (MiB)", f"{peak_bytes / 2**20:,.1f}"),
        ("  of which temporaries (MiB)", f"{memory.temp_size_in_bytes / 2**20:,.1f}"),
        ("  of which arguments (MiB)", f"{memory.argument_size_in_bytes / 2**20:,.1f}"),
        ("final loss", f"{float(metrics['loss']):.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
