r"""Ablation: frame times as guidance.

Three levels: times in the adaLN conditioning and added to each frame's tokens (the default),
in the adaLN conditioning only, and no times at all (the model sees only the frames' order).

  python -m launch.sweep --sweep configs/sweeps/guidance.py --workdir runs/sweep_guidance
"""

from configs.sweeps import Sweep


def get_sweep() -> Sweep:
    return Sweep(
        base="configs/sdit.py:tiny",
        variants=[
            {"model.frame_time_condition": True, "model.time_in_tokens": True},
            {"model.frame_time_condition": True, "model.time_in_tokens": False},
            {"model.frame_time_condition": False, "model.time_in_tokens": False},
        ],
    )
