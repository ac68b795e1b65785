r"""CPU training throughput against this CPU's own matmul ceiling (`launch.benchmark cpu`).

  python -m launch.benchmark cpu --config configs/sdit.py:S
  python -m launch.benchmark cpu --config configs/sdit.py:S --config.model.scan_layers=False

In one process, one after the other:

1. the ceiling: the achieved FLOP/s of a large float32 matmul (`--matmul_n` square, best call), the
   best XLA:CPU does on this machine;
2. the sDiT train step of `benchmark train` (forward, backward, AdamW, EMA) at the
   DiT-equivalent form of `--config`: one frame, DiT's class-label conditioning
   (`identity=class_label`, no frame-time or landmark conditions), one device, batch
   `--batch_size` (default 8). With configs/sdit.py:S that is DiT-S/2 on 32x32x4 latents.

It prints the median step time, the achieved FLOP/s of each (analytic matmul and attention
FLOPs, x3 for forward + backward) and their ratio. Because both run in the same process on
the same cores, the ratio is meaningful on a noisy shared machine where bare times are not.
Any other knob is overridden as usual (`--config.model.remat_policy=dots`).

3. the step's own dots, timed alone: every `dot_general` in the step's jaxpr (a scan body's
   dots count once per layer), each jitted by itself on random operands of its shapes. Their
   summed time is what the step would take if it did nothing but its matmuls, at the speed
   XLA:CPU's dot library reaches at those shapes; the step / matmul ratio cannot rise above
   the one this time gives (`--dot_table` lists the dots, slowest first).
"""

import collections
import dataclasses
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anchored_jax.evaluation.step_timing import measure_train_step, print_table  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:S.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Batch size; 0 = the config's (capped at 8).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step.")
flags.mark_flags_as_required(["config"])

_MATMUL_N = flags.DEFINE_integer("matmul_n", 2048, "Side of the square matmul ceiling.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 10, "Timed calls of the ceiling matmul (best) and of each dot (median)."
)
_DOT_TABLE = flags.DEFINE_integer("dot_table", 0, "Print the N slowest of the step's dots.")


def make_dit_equivalent(config, batch_size: int) -> None:
    """Turns an sDiT config into the one computing DiT's function: one frame, class labels."""
    from anchored_jax.interop.dit_import import dit_parity_overrides

    config.data.clip_frames = 1
    config.training.batch_size = batch_size
    config.model.update(dit_parity_overrides())
    config.mesh.num_devices = 1


def matmul_flops_per_s(n: int, repeats: int) -> float:
    """Achieved FLOP/s of one jitted float32 `[n, n] @ [n, n]`, the best of `repeats` calls.

    The best call, not the median: this is a ceiling, and on a shared machine the median of a
    short matmul swings by half from run to run while the best call holds.
    """
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    b = jnp.asarray(rng.standard_normal((n, n), dtype=np.float32))
    return 2.0 * n**3 / min(call_times(jnp.matmul, (a, b), repeats))


def call_times(fn, args, repeats: int) -> list[float]:
    """Seconds of `repeats` calls of `fn` jitted and compiled for `args`, after one warm-up."""
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return times


@dataclasses.dataclass(frozen=True)
class Dot:
    """One `dot_general` of a traced step: operand shapes, dimension numbers, dtypes."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    out: tuple[int, ...]
    dimension_numbers: tuple
    dtype: str
    out_dtype: str

    @property
    def flops(self) -> float:
        (lhs_contracting, _), _ = self.dimension_numbers
        return 2.0 * math.prod(self.out) * math.prod(self.lhs[i] for i in lhs_contracting)

    def describe(self) -> str:
        (lc, rc), (lb, rb) = self.dimension_numbers
        shapes = f"{list(self.lhs)} x {list(self.rhs)} -> {list(self.out)}"
        return f"{shapes} (contract {lc}/{rc}, batch {lb}/{rb})"


def step_dots(jaxpr) -> collections.Counter:
    """Every `dot_general` in `jaxpr` (a ClosedJaxpr), with how often one run executes it.

    Sub-jaxprs (jit, remat, custom derivatives, cond branches) are walked; a scan body
    counts `length` times. A while loop's trip count is unknown, so its body counts once.
    """
    from jax.extend import core as jcore

    counts = collections.Counter()

    def walk(inner, times):
        for eqn in inner.eqns:
            if eqn.primitive.name == "dot_general":
                lhs, rhs = (v.aval for v in eqn.invars)
                out = eqn.outvars[0].aval
                dn = eqn.params["dimension_numbers"]
                dn = tuple(tuple(tuple(axes) for axes in pair) for pair in dn)
                dot = Dot(lhs.shape, rhs.shape, out.shape, dn, str(lhs.dtype), str(out.dtype))
                counts[dot] += times
            repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jcore.ClosedJaxpr):
                        walk(sub.jaxpr, times * repeat)
                    elif isinstance(sub, jcore.Jaxpr):
                        walk(sub, times * repeat)

    walk(jaxpr.jaxpr, 1)
    return counts


def time_dot(dot: Dot, repeats: int) -> float:
    """Median seconds of `dot` jitted alone on random operands (after one warm-up call)."""
    import functools

    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    lhs = jax.numpy.asarray(rng.standard_normal(dot.lhs), dot.dtype)
    rhs = jax.numpy.asarray(rng.standard_normal(dot.rhs), dot.dtype)
    fn = functools.partial(
        jax.lax.dot_general,
        dimension_numbers=dot.dimension_numbers,
        preferred_element_type=np.dtype(dot.out_dtype),
    )
    times = call_times(fn, (lhs, rhs), repeats)
    return sorted(times)[len(times) // 2]


def time_step_dots(jaxpr, repeats: int) -> list[tuple[Dot, int, float]]:
    """`(dot, count, seconds per call)` for each distinct dot of the step, slowest total first."""
    rows = [(dot, n, time_dot(dot, repeats)) for dot, n in step_dots(jaxpr).items()]
    return sorted(rows, key=lambda row: -row[1] * row[2])


def main(argv):
    del argv
    import jax

    config = _CONFIG.value
    make_dit_equivalent(config, _BATCH.value or 8)
    ceiling = matmul_flops_per_s(_MATMUL_N.value, _REPEATS.value)
    r = measure_train_step(config, _STEPS.value)
    achieved = r["flops_per_step"] / r["step_s_median"]
    dots = time_step_dots(r["jaxpr"], _REPEATS.value)
    dots_s = sum(n * seconds for _, n, seconds in dots)
    dots_flops = sum(n * dot.flops for dot, n, _ in dots)
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
            ("step's dots timed alone (s)", f"{dots_s:.4f}   ({sum(n for _, n, _ in dots)} calls)"),
            ("  their GFLOP/s", f"{dots_flops / dots_s / 1e9:.1f}"),
            ("  step / matmul at that time", f"{r['flops_per_step'] / dots_s / ceiling:.1%}"),
            ("  step time outside them (s)", f"{r['step_s_median'] - dots_s:.4f}"),
            ("loss", f"{r['loss']:.4f}"),
        ]
    )
    if _DOT_TABLE.value:
        print()
        print("| dot | calls | ms each | GFLOP/s | share of the dots' time |")
        print("|---|---|---|---|---|")
        for dot, n, seconds in dots[: _DOT_TABLE.value]:
            share = n * seconds / dots_s
            print(
                f"| {dot.describe()} | {n} | {seconds * 1e3:.2f} | "
                f"{dot.flops / seconds / 1e9:.1f} | {share:.1%} |"
            )
