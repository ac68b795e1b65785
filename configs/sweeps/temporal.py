r"""Ablation: how training clips are sampled in time (`data.sampler`).

uniform_stride is the baseline (evenly spaced frames); random_subset and loguniform_gaps give
the random, non-uniform spacing the anchored sampler relies on at long distances.

  python -m launch.sweep --sweep configs/sweeps/temporal.py --workdir runs/sweep_temporal \
      [--config configs/sdit.py:S] [--set training.num_steps=300]
"""

from configs.sweeps import Sweep, sweep


def get_sweep() -> Sweep:
    return Sweep(
        base="configs/sdit.py:tiny",
        variants=sweep("data.sampler", ["uniform_stride", "random_subset", "loguniform_gaps"]),
    )
