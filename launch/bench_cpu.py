r"""CPU training throughput against this CPU's own matmul ceiling (`launch.benchmark cpu`).

  python -m launch.benchmark cpu
  python -m launch.benchmark cpu --size B --batch_size 8 --steps 5

In one process, one after the other:

1. the ceiling: the achieved FLOP/s of a large float32 matmul (`--matmul_n` square), the
   best XLA:CPU does on this machine;
2. the sDiT train step (forward, backward, AdamW, EMA) at the DiT-equivalent config of
   `--size`: one frame of 32x32x4 latents, patch 2, DiT's class-label conditioning
   (`identity=class_label`, no frame-time or landmark conditions), batch `--batch_size`.

It prints the step time, the achieved FLOP/s of each (analytic matmul and attention FLOPs,
x3 for forward + backward) and their ratio. Because both run in the same process on the
same cores, the ratio is meaningful on a noisy shared machine where bare times are not.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

_SIZE = flags.DEFINE_enum("size", "S", ["S", "B", "L", "XL"], "DiT-equivalent sDiT size.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Training batch (clips of one frame).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step (median).")
_MATMUL_N = flags.DEFINE_integer("matmul_n", 2048, "Side of the square matmul ceiling.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed matmuls (median).")
_SET = flags.DEFINE_multi_string(
    "set", [], "Config override as section.field=value, e.g. model.scan_layers=False."
)


def apply_overrides(config, overrides) -> None:
    """`section.field=value` strings onto `config`, the value parsed as a Python literal."""
    import ast

    for text in overrides:
        path, sep, raw = text.partition("=")
        section, _, field = path.rpartition(".")
        target = config
        for part in filter(None, section.split(".")):
            target = target[part]
        if not sep or field not in target:
            raise SystemExit(
                f"error: --set: expected an existing section.field=value, got {text!r}"
            )
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string such as model.dtype=bfloat16
        target[field] = value


def dit_equivalent_config(size: str, batch_size: int):
    """The sDiT config that computes DiT-<size>/2's function: one frame, class labels."""
    from anchored_jax.interop.dit_import import dit_parity_overrides
    from configs.sdit import get_config

    config = get_config(size)
    config.data.clip_frames = 1
    config.training.batch_size = batch_size
    for name, value in dit_parity_overrides().items():
        config.model[name] = value
    config.mesh.num_devices = 1
    return config


def matmul_flops_per_s(n: int, repeats: int) -> float:
    """Achieved FLOP/s of one jitted float32 `[n, n] @ [n, n]` (median of `repeats`)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / sorted(times)[len(times) // 2]


def class_label_batch(config, rng):
    import numpy as np

    m = config.model
    B = config.training.batch_size
    return dict(
        video_BKHWC=rng.standard_normal(
            (B, 1, m.image_size, m.image_size, m.in_channels), np.float32
        ),
        times_BK=np.zeros((B, 1), np.float32),
        landmarks_BKLC=np.zeros((B, 1, m.num_landmarks, m.landmark_dim), np.float32),
        identity_BHWC=rng.integers(0, m.num_classes, (B,)).astype(np.int32),
    )


def measure_step(config, steps: int) -> dict:
    """Median step time of the real sharded train step on one device, after a warm-up."""
    import jax
    import numpy as np

    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.models.sdit_config import SDiTConfig
    from anchored_jax.parallel.logical_sharding import use_rules
    from anchored_jax.training.sdit_setup import make_sdit_setup

    setup = make_sdit_setup(config)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        batch = setup.to_device(class_label_batch(config, np.random.default_rng(0)))
        key = jax.random.key(0)
        start = time.perf_counter()
        step = setup.train_step.lower(state, batch, key).compile()
        compile_s = time.perf_counter() - start
        state, metrics = step(state, batch, key)  # warm-up
        jax.block_until_ready(metrics)
        times = []
        for i in range(steps):
            start = time.perf_counter()
            state, metrics = step(state, batch, jax.random.fold_in(key, i))
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - start)
    model_config = SDiTConfig(**config.model.to_dict())
    flops = sdit_train_flops_per_example(model_config, 1) * config.training.batch_size
    return dict(
        step_s=sorted(times)[len(times) // 2],
        compile_s=compile_s,
        flops=flops,
        loss=float(metrics["loss"]),
    )


def main(argv):
    del argv
    import jax

    config = dit_equivalent_config(_SIZE.value, _BATCH.value)
    apply_overrides(config, _SET.value)
    ceiling = matmul_flops_per_s(_MATMUL_N.value, _REPEATS.value)
    r = measure_step(config, _STEPS.value)
    achieved = r["flops"] / r["step_s"]
    m = config.model
    rows = [
        ("device", f"{jax.devices()[0].device_kind} x {jax.device_count()}"),
        ("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") or "(none)"),
        ("overrides", ", ".join(_SET.value) or "(none)"),
        ("model", f"DiT-{_SIZE.value}/2 equivalent: {m.width}w x {m.depth}d, 1 frame"),
        ("batch x tokens", f"{_BATCH.value} x {(m.image_size // m.patch_size) ** 2}"),
        ("compile (s)", f"{r['compile_s']:.1f}"),
        ("train step (s, median)", f"{r['step_s']:.4f}"),
        ("analytic FLOPs/step", f"{r['flops']:.3e}"),
        ("train step GFLOP/s", f"{achieved / 1e9:.1f}"),
        (f"matmul {_MATMUL_N.value}^2 GFLOP/s", f"{ceiling / 1e9:.1f}"),
        ("step / matmul", f"{achieved / ceiling:.1%}   (goal >= 85%)"),
        ("loss", f"{r['loss']:.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
