"""Mean and spread over noise seeds of the report's rows.

One seed's row pools all clips (`metric_suite.summarize_suite`). Differences between samplers
are only worth reading when they exceed what changing the noise seed (and, for the random
plan, the seeded partition) does, so every number is reported as the mean over seeds and
their standard deviation (ddof 1; 0 with a single seed). The same applies, point by point, to
the distance curves, which is what the plots' shaded bands show.
"""

from __future__ import annotations

import numpy as np


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _curve(curves: list) -> tuple[list, list] | None:
    """Point-by-point mean and std of `(x, y)` curves that share their x (None if not)."""
    xs = [tuple(c[0]) for c in curves]
    if len(set(xs)) != 1:
        return None
    y_SN = np.asarray([c[1] for c in curves], np.float64)
    std = np.std(y_SN, axis=0, ddof=1) if len(curves) > 1 else np.zeros(y_SN.shape[1])
    return [list(xs[0]), y_SN.mean(axis=0).tolist()], [list(xs[0]), std.tolist()]


def across_seeds(rows: list[dict]) -> tuple[dict, dict]:
    """`(mean, std)` of rows with the same layout, one per seed.

    Numbers are averaged; a number that is None in any seed is None (undefined, e.g. the
    seam ratio of copy-source); nested dicts are handled key by key; `curves` entries (pairs
    of x and y lists) point by point. Other values (strings) are left out.
    """
    mean, std = {}, {}
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for key in keys:
        values = [r.get(key) for r in rows]
        if key == "curves":
            pairs = {m: _curve([v[m] for v in values]) for m in values[0]}
            mean[key] = {m: p[0] for m, p in pairs.items() if p is not None}
            std[key] = {m: p[1] for m, p in pairs.items() if p is not None}
        elif all(isinstance(v, dict) for v in values):
            mean[key], std[key] = across_seeds(values)
        elif all(_is_number(v) for v in values):
            mean[key], std[key] = float(np.mean(values)), _std(values)
        elif any(v is None for v in values) and all(v is None or _is_number(v) for v in values):
            mean[key] = std[key] = None
    return mean, std
