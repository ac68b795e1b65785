r"""Peak memory of a long reenactment against a short one (`launch.benchmark reenact_memory`).

  python -m launch.benchmark reenact_memory --checkpoint runs/sdit_tiny --frames 500,20000 \
      --steps 2

Runs `python -m launch.reenact` once per `--frames` value, each in its own process on one CPU
device, and reads that process's peak resident memory (`ru_maxrss` from `os.wait4`). Frames
are written as each window of segments is sampled, so the long run should stay within a small
factor of the short one (the target is 1.5x); the table prints each run's peak, wall time and
its ratio to the first.
"""

import os
import subprocess
import sys
import tempfile
import time

from absl import flags

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "sDiT workdir or exported checkpoint.")
_FRAMES = flags.DEFINE_list("frames", ["500", "20000"], "Video lengths, one process each.")
_STEPS = flags.DEFINE_integer("steps", 2, "Solver steps of each run.")
_DRIVING = flags.DEFINE_string("driving", "synthetic:0", "The driving input of every run.")
_DISPLAY = flags.DEFINE_integer("display_size", 64, "Panel side of the written videos.")
_OUT_DIR = flags.DEFINE_string("out_dir", "", "Where the videos go; '' = a temporary folder.")


def peak_rss_of(argv: list[str]) -> tuple[int, float, int, str]:
    """`(peak RSS in bytes, seconds, exit status, stderr tail)` of one command."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.perf_counter() - start, proc.returncode, stderr[-2000:]


def main(argv):
    del argv
    if not _CHECKPOINT.value:
        sys.exit("error: --checkpoint: required (a trained sDiT workdir or export)")
    try:
        lengths = [int(f) for f in _FRAMES.value]
    except ValueError:
        sys.exit(f"error: --frames: expected comma-separated ints, got {_FRAMES.value}")
    out_dir = _OUT_DIR.value or tempfile.mkdtemp(prefix="reenact_memory_")
    print("| frames | peak RSS (MiB) | wall (s) | ratio to the first |")
    print("|-------:|---------------:|---------:|-------------------:|")
    first = None
    for frames in lengths:
        argv = [
            sys.executable, "-m", "launch.reenact", "--checkpoint", _CHECKPOINT.value,
            "--driving", _DRIVING.value, "--frames", str(frames), "--steps", str(_STEPS.value),
            "--display_size", str(_DISPLAY.value),
            "--out", os.path.join(out_dir, f"reenact_{frames}.mp4"),
        ]  # fmt: skip
        rss, seconds, code, stderr = peak_rss_of(argv)
        if code != 0:
            sys.exit(f"error: reenact --frames {frames} failed ({code}): {stderr.strip()[-500:]}")
        first = first or rss
        print(f"| {frames} | {rss / 2**20:,.0f} | {seconds:.0f} | {rss / first:.2f} |", flush=True)
