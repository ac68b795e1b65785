r"""CPU training throughput against this CPU's own matmul ceiling (`launch.benchmark cpu`).

  python -m launch.benchmark cpu --config configs/sdit.py:S
  python -m launch.benchmark cpu --config configs/sdit.py:S --config.model.scan_layers=False

In one process, one after the other:

1. the ceiling: the achieved FLOP/s of a large float32 matmul (`--matmul_n` square), the
   best XLA:CPU does on this machine;
2. the sDiT train step of `benchmark train` (forward, backward, AdamW, EMA) at the
   DiT-equivalent form of `--config`: one frame, DiT's class-label conditioning
   (`identity=class_label`, no frame-time or landmark conditions), one device, batch
   `--batch_size` (default 8). With configs/sdit.py:S that is DiT-S/2 on 32x32x4 latents.

It prints the median step time, the achieved FLOP/s of each (analytic matmul and attention
FLOPs, x3 for forward + backward) and their ratio. Because both run in the same process on
the same cores, the ratio is meaningful on a noisy shared machine where bare times are not.
Any other knob is overridden as usual (`--config.model.remat_policy=dots`).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from launch.bench_train import _BATCH, _CONFIG, _STEPS, measure_train_step, print_table  # noqa: E402

_MATMUL_N = flags.DEFINE_integer("matmul_n", 2048, "Side of the square matmul ceiling.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed matmuls (median).")


def make_dit_equivalent(config, batch_size: int) -> None:
    """Turns an sDiT config into the one computing DiT's function: one frame, class labels."""
    from anchored_jax.interop.dit_import import dit_parity_overrides

    config.data.clip_frames = 1
    config.training.batch_size = batch_size
    config.model.update(dit_parity_overrides())
    config.mesh.num_devices = 1


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


def main(argv):
    del argv
    import jax

    config = _CONFIG.value
    make_dit_equivalent(config, _BATCH.value or 8)
    ceiling = matmul_flops_per_s(_MATMUL_N.value, _REPEATS.value)
    r = measure_train_step(config, _STEPS.value)
    achieved = r["flops_per_step"] / r["step_s_median"]
    m = config.model
    overrides = [arg for arg in sys.argv[1:] if arg.startswith("--config.")]
    print_table(
        [
            ("device", f"{jax.devices()[0].device_kind} x {jax.device_count()}"),
            ("XLA_FLAGS", os.environ.get("XLA_FLAGS", "") or "(none)"),
            ("overrides", " ".join(overrides) or "(none)"),
            ("model", f"DiT equivalent: {m.width}w x {m.depth}d, patch {m.patch_size}, 1 frame"),
            ("batch x tokens", f"{config.training.batch_size} x {r['tokens_per_frame']}"),
            ("compile (s)", f"{r['compile_s']:.1f}"),
            ("train step (s, median)", f"{r['step_s_median']:.4f}"),
            ("analytic FLOPs/step", f"{r['flops_per_step']:.3e}"),
            ("train step GFLOP/s", f"{achieved / 1e9:.1f}"),
            (f"matmul {_MATMUL_N.value}^2 GFLOP/s", f"{ceiling / 1e9:.1f}"),
            ("step / matmul", f"{achieved / ceiling:.1%}   (goal >= 85%)"),
            ("loss", f"{r['loss']:.4f}"),
        ]
    )
