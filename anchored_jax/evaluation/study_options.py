"""The evaluation study's choices, checked before anything is loaded: methods, plans, seeds.

The study compares four ways of sampling a long video and one baseline:

- `anchored_known`: every segment shares the source image as its clean anchor;
- `anchored_generated`: every segment shares one generated anchor, averaged across segments;
- `independent`: the same segments, each generating its own anchor (nothing shared);
- `autoregressive`: segment s is conditioned on the last frame of segment s-1 (contiguous plan);
- `copy_source`: the source frame repeated, always added as the floor to beat.

Each check raises one `ValueError` line that names the flag, so a typo costs nothing: the
command stops before the model loads.
"""

from __future__ import annotations

import math

from anchored_jax.sampling.segment_plan import PLAN_KINDS

REPORT_METHODS = ("anchored_known", "anchored_generated", "independent", "autoregressive")
COPY = "copy_source"
ALIASES = {"anchored": "anchored_known"}  # the report's earlier name
ANCHOR_CHOICES = ("known", "generated", "both")
# auto: the synthetic regressor on synthetic data, MediaPipe on real videos; '': no AKD.
AKD_CHOICES = ("auto", "synthetic", "mediapipe", "")


def check_count(flag: str, value, lowest: int) -> int:
    """An int flag that must be at least `lowest`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{flag}: expected an int >= {lowest}, got {value!r}")
    return value


def resolve_methods(methods: list[str] | None, anchor: str = "both") -> list[str]:
    """The methods to run, in report order. None: all four, with `--anchor` choosing which
    anchored variants; a list is taken as given (old names mapped, copy-source implied)."""
    if anchor not in ANCHOR_CHOICES:
        raise ValueError(f"--anchor: expected one of {list(ANCHOR_CHOICES)}, got {anchor!r}")
    if methods is None:
        keep = {"known": ("anchored_known",), "generated": ("anchored_generated",)}.get(
            anchor, ("anchored_known", "anchored_generated")
        )
        return [m for m in REPORT_METHODS if not m.startswith("anchored_") or m in keep]
    named = [ALIASES.get(m.strip(), m.strip()) for m in methods]
    unknown = [m for m in named if m not in (*REPORT_METHODS, COPY)]
    chosen = [m for m in REPORT_METHODS if m in named]
    if unknown or not chosen:
        raise ValueError(
            f"--methods: expected a non-empty subset of {list(REPORT_METHODS)} (or anchored), "
            f"got {list(methods)}"
        )
    return chosen


def check_plans(plans: list[str]) -> list[str]:
    """The segment plans, in the order given, without repeats."""
    plans = [p.strip() for p in plans or []]
    if not plans or any(p not in PLAN_KINDS for p in plans):
        raise ValueError(
            f"--plan: expected a non-empty list of {list(PLAN_KINDS)}, got {list(plans)}"
        )
    return list(dict.fromkeys(plans))


def check_seeds(seeds: list) -> list[int]:
    """Noise seeds: distinct ints >= 0 (strings from the command line are parsed)."""
    try:
        parsed = [int(s) for s in seeds or []]
    except (TypeError, ValueError):
        parsed = []
    if not parsed or any(s < 0 for s in parsed) or len(set(parsed)) != len(parsed):
        raise ValueError(f"--seeds: expected distinct ints >= 0, got {list(seeds or [])}")
    return parsed


def parse_guidance(spec) -> tuple[float, float]:
    """`IDENTITY_SCALE,LANDMARK_SCALE` as two finite floats >= 0 (1,1 = no guidance)."""
    values = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        scales = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        scales = ()
    if len(scales) != 2 or not all(math.isfinite(s) and s >= 0 for s in scales):
        raise ValueError(
            f"--guidance: expected IDENTITY_SCALE,LANDMARK_SCALE, two numbers >= 0, got {spec!r}"
        )
    return scales


def check_anchor_gap(value: float) -> float:
    if not (value >= 0 or value == -1):
        raise ValueError(
            "--max_anchor_gap: expected seconds >= 0 (0 = true times) or -1 (the run's "
            f"training window), got {value!r}"
        )
    return float(value)


def landmark_kind(spec: str, data_kind: str) -> str:
    """The AKD extractor: `auto` becomes `synthetic` on the synthetic faces (whose exact
    landmarks it was trained on) and `mediapipe` on real videos."""
    if spec not in AKD_CHOICES:
        raise ValueError(f"--akd_landmarks: expected one of {list(AKD_CHOICES)}, got {spec!r}")
    if spec == "auto":
        return "synthetic" if data_kind == "synthetic" else "mediapipe"
    return spec
