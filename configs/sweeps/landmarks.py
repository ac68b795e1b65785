r"""Ablation: landmark encoding. An MLP over normalised coordinates into the per-frame adaLN
(both variants), with or without each frame's rasterised landmark map added to its tokens.

  python -m launch.sweep --sweep configs/sweeps/landmarks.py --workdir runs/sweep_landmarks
"""

from configs.sweeps import Sweep, sweep


def get_sweep() -> Sweep:
    return Sweep(
        base="configs/sdit.py:tiny",
        variants=sweep("model.landmark_tokens", [True, False]),
    )
