r"""Benchmarks, each printing a table. The first argument picks one (default: train).

  python -m launch.benchmark --config configs/sdit.py:tiny          # the sDiT train step
  python -m launch.benchmark train --config configs/sdit.py:S --batch_size 2
  python -m launch.benchmark reenact_memory --checkpoint runs/sdit_tiny --frames 500,20000

Each benchmark lives in its own `launch/bench_<name>.py` module with an absl `main`.
"""

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BENCHMARKS = ("train", "data", "sampler", "memory", "scaling", "cpu", "reenact_memory")


def main() -> None:
    argv = list(sys.argv)
    name = "train"
    if len(argv) > 1 and not argv[1].startswith("-"):
        name = argv.pop(1)
    if name not in BENCHMARKS:
        sys.exit(f"error: benchmark: expected one of {list(BENCHMARKS)}, got {name!r}")
    module = importlib.import_module(f"launch.bench_{name}")
    from absl import app

    app.run(module.main, argv=argv)


if __name__ == "__main__":
    main()
