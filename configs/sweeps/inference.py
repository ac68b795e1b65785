r"""Ablation at inference: anchor mode x segment plan, scored on one trained checkpoint.

Anchor modes: the known source held clean (per-frame t=0), the known source re-noised to each
step's t, and a generated anchor averaged across segments. Plans: contiguous, strided (every
segment spans the video) and random (non-uniform, like training). Nothing is trained:

  python -m launch.sweep --sweep configs/sweeps/inference.py --checkpoint runs/sdit_tiny \
      --workdir runs/sweep_inference [--set eval.frames=256]
"""

from configs.sweeps import Sweep, product, sweep

ANCHOR_MODES = [
    {"sampling.anchor": "known", "sampling.known_anchor_mode": "clean"},
    {"sampling.anchor": "known", "sampling.known_anchor_mode": "renoise"},
    {"sampling.anchor": "generated"},
]


def get_sweep() -> Sweep:
    return Sweep(
        base="configs/sdit.py:tiny",
        variants=product(ANCHOR_MODES, sweep("sampling.plan", ["contiguous", "strided", "random"])),
        train=False,
    )
