r"""Ablation: joint attention over all K*N tokens vs factorised (within a frame, then across
frames at each patch); factorised costs less at large K.

  python -m launch.sweep --sweep configs/sweeps/attention.py --workdir runs/sweep_attention
"""

from configs.sweeps import Sweep, sweep


def get_sweep() -> Sweep:
    return Sweep(
        base="configs/sdit.py:tiny",
        variants=sweep("model.attention", ["joint", "factorized"]),
    )
