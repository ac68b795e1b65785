"""The evaluation report on disk: resumable parts, metrics.json, report.md and the plots.

A report folder holds `parts/` (one `.npz` per finished (method, plan, seed, clip), written
atomically, plus `parts/settings.json`, the settings they were computed with), `metrics.json`
(every number, the settings and the skipped metrics' reasons), `report.md` (per plan, the
consistency and fidelity tables with the seeds' spread, the skipped notes and links to the
figures) and, per plan, PNG plots of PSNR and face-colour drift against the distance from the
anchor (the frame index: the source is frame 0), one line per method with the seeds' spread
as a band.
"""

from __future__ import annotations

import json
import os

import numpy as np

from anchored_jax.evaluation.curve_plots import write_line_plot
from anchored_jax.evaluation.report_tables import DEFINITIONS, plan_tables

PARTS = "parts"
SETTINGS_FILE = "settings.json"
PLOTS = (("psnr", "PSNR (dB)"), ("drift", "face colour drift"))
STRIP = "frame_strip.png"


def part_name(method: str, plan: str | None = None, seed: int | None = None) -> str:
    """`method`, `method_<plan>` or `method_<plan>_s<seed>`: what a part depends on."""
    name = method if plan is None else f"{method}_{plan}"
    return name if seed is None else f"{name}_s{seed}"


def part_path(out_dir: str, name: str, clip: int) -> str:
    """`<out>/parts/<name>_<clip>.npz`; name from `part_name` (`reference`: the real clip)."""
    return os.path.join(out_dir, PARTS, f"{name}_{clip}.npz")


def plot_name(metric: str, plan: str) -> str:
    return f"{metric}_vs_distance_{plan}.png"


def strip_name(plan: str, first: bool) -> str:
    """The first plan's strip is `frame_strip.png`, the others' `frame_strip_<plan>.png`."""
    return STRIP if first else f"frame_strip_{plan}.png"


def save_part(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes the part under a temporary name, then renames: a killed run leaves no half part."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)


def load_part(path: str) -> dict[str, np.ndarray] | None:
    """A finished part, or None if it was never written."""
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def check_settings(out_dir: str, settings: dict) -> None:
    """Records the settings of the parts; a rerun with other settings raises one line."""
    path = os.path.join(out_dir, PARTS, SETTINGS_FILE)
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they come back
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if changed:
            k = changed[0]
            raise ValueError(
                f"--out {out_dir}: its parts were computed with {k}={saved.get(k)!r}, not "
                f"{settings.get(k)!r} ({len(changed)} settings differ); use another --out or "
                f"delete {os.path.dirname(path)}"
            )
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=1, sort_keys=True)


def _leo_section(leo: dict) -> str:
    lines = []
    if "animator" in leo:
        a = leo["animator"]
        akd = "akd_px" in a["animator"]  # synthetic faces only
        lines += [
            f"\n## LEO animator self-reconstruction ({a['videos']} held-out videos x "
            f"{a['frames']} frames; {a['workdir']})\n",
            "| method | L1 | PSNR (dB) | SSIM |" + (" AKD (px) |" if akd else ""),
            "|---|---|---|---|" + ("---|" if akd else ""),
        ]
        for name in ("animator", "copy_source"):
            r = a[name]
            row = f"| {name} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.3f} |"
            lines.append(row + (f" {r['akd_px']:.2f} |" if akd else ""))
        if akd:  # the regressor on the real frames: the lowest AKD it can report
            lines.append(f"| real frames | 0 | — | 1 | {a['akd_floor_px']:.2f} |")
        if "code_probe_r2" in a:
            probe = a["code_probe_r2"]
            lines += [
                "\nWhat the motion code holds: R² on held-out videos of a linear map from codes"
                " to each factor, both relative to frame 0 (1 = held; <= 0 = not held)\n",
                "| " + " | ".join(probe) + " |",
                "|" + "---|" * len(probe),
                "| " + " | ".join(f"{v:.2f}" for v in probe.values()) + " |",
            ]
    if "lmdm" in leo:
        m = leo["lmdm"]
        lines += [
            f"\n## LEO generated motion ({m['sequences']} sequences; {m['workdir']})\n",
            "| motion | mean abs(delta alpha) | std |",
            "|---|---|---|",
            f"| held-out real | {m['real_delta_mean']:.4f} | {m['real_delta_std']:.4f} |",
            f"| generated | {m['generated_delta_mean']:.4f} | {m['generated_delta_std']:.4f} |",
        ]
    return "\n".join(lines) + ("\n" if lines else "")


def markdown_report(metrics: dict, videos: list[str] = (), strips: list[str] = ()) -> str:
    """report.md: the settings, per plan the two tables, skipped notes, figures and videos."""
    s = metrics.get("settings", {})
    parts = []
    plans = metrics.get("plans", {})
    if plans:
        parts.append(
            f"# Evaluation of {s.get('checkpoint', '?')}\n\n"
            f"Self-reenactment of {s.get('clips')} clips x {s.get('frames')} frames "
            f"(data: {s.get('data')}), {s.get('steps')} DDIM steps, guidance (identity, "
            f"landmarks) {s.get('guidance')}, max anchor gap {s.get('max_anchor_gap_s')} s "
            f"(0 = true times), seeds {s.get('seeds')}. Every cell is mean ± std over the seeds, "
            "clips pooled within a seed. The autoregressive chain always runs the contiguous "
            "plan: it is computed once per seed and its row repeats in every plan's table.\n"
        )
        parts.append(DEFINITIONS)
        skipped = metrics.get("skipped", {})
        for plan, result in plans.items():
            parts.append(f"\n## Plan `{plan}`\n")
            parts.append(plan_tables(plan, result, skipped))
            parts.append(
                "\n" + " ".join(f"![{label}, plan {plan}]({plot_name(m, plan)})"
                                for m, label in PLOTS) + "\n"
            )  # fmt: skip
        if skipped:
            parts.append("\nSkipped metrics:\n\n")
            parts += [f"- {k}: {v}\n" for k, v in sorted(skipped.items())]
        if strips:
            parts.append("\nFrame strips (first clip, first seed; rows: real, then methods):\n\n")
            parts += [f"![frame strip]({p})\n" for p in strips]
        if videos:
            parts.append(
                "\nSample videos (source | landmarks | real | methods in table order):\n\n"
            )
            parts += [f"- [{v}]({v})\n" for v in videos]
    parts.append(_leo_section(metrics.get("leo", {})))
    return "".join(parts)


def write_plots(out_dir: str, metrics: dict) -> list[str]:
    """Per plan, PSNR and drift against distance from the anchor: a line per method, a band
    of ± one std over seeds."""
    s = metrics.get("settings", {})
    paths = []
    for plan, result in metrics["plans"].items():
        methods = result["methods"]
        for metric, label in PLOTS:
            series, bands = {}, {}
            for method, stats in methods.items():
                curve = stats["mean"].get("curves", {}).get(metric)
                if curve:
                    series[method] = tuple(map(np.asarray, curve))
                    bands[method] = np.asarray(stats["std"]["curves"][metric][1])
            if not series:
                continue
            path = os.path.join(out_dir, plot_name(metric, plan))
            write_line_plot(
                path, series, bands=bands, log_x=True, size=(900, 480),
                title=f"{label} vs distance from the anchor, plan {plan} "
                f"({len(s.get('seeds', []))} seeds x {s.get('clips')} clips x "
                f"{s.get('frames')} frames; band: ± std over seeds)",
                xlabel="distance from the anchor (frames)", ylabel=label,
            )  # fmt: skip
            paths.append(path)
    return paths


def write_report(
    out_dir: str, metrics: dict, videos: list[str] = (), strips: list[str] = ()
) -> list[str]:
    """Writes metrics.json, report.md and (with method results) the plots; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "metrics.json"), os.path.join(out_dir, "report.md")]
    tmp = f"{paths[0]}.tmp"
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=1)
    os.replace(tmp, paths[0])
    with open(paths[1], "w") as f:
        f.write(markdown_report(metrics, videos, strips))
    if metrics.get("plans"):
        paths += write_plots(out_dir, metrics)
    return paths
