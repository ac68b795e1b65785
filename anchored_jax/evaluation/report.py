"""The evaluation report on disk: resumable parts, metrics.json, report.md and the plots.

A report folder holds `parts/` (one `.npz` per finished (method, clip), written atomically,
plus `parts/settings.json`, the settings they were computed with), `metrics.json` (every
number, the settings and the skipped metrics' reasons), `report.md` (the table, the skipped
notes and links to the figures) and PNG line plots of face-colour drift, PSNR and SSIM against
the distance from the anchor (the frame index: the source is frame 0).
"""

from __future__ import annotations

import json
import os

import numpy as np

from anchored_jax.evaluation.line_plot import write_line_plot

PARTS = "parts"
SETTINGS_FILE = "settings.json"
PLOTS = (
    ("drift", "face colour drift", "drift_vs_distance.png"),
    ("psnr", "PSNR (dB)", "psnr_vs_distance.png"),
    ("ssim", "SSIM", "ssim_vs_distance.png"),
)
# (column, row key, format); a key absent from every row is a skipped metric.
COLUMNS = (
    ("PSNR (dB)", "psnr_mean", ".2f"),
    ("PSNR, moved", "psnr_moved_mean", ".2f"),
    ("SSIM", "ssim_mean", ".3f"),
    ("L1", "l1_mean", ".3f"),
    ("LPIPS", "lpips_mean", ".3f"),
    ("drift", "drift_mean", ".3f"),
    ("drift slope /100 fr", "drift_slope_per_100_frames", "+.4f"),
    ("PSNR slope /100 fr", "psnr_slope_per_100_frames", "+.3f"),
    ("TDE", "tde_mean", ".4f"),
    ("FID", "fid", ".2f"),
    ("FVD", "fvd", ".2f"),
    ("CSIM", "csim", ".3f"),
    ("AED", "aed", ".3f"),
    ("AKD (px)", "akd", ".2f"),
)
SKIP_KEYS = {"lpips_mean": "lpips", "tde_mean": "temporal", "fid": "fid", "fvd": "fvd",
             "csim": "csim_aed", "aed": "csim_aed", "akd": "akd"}  # fmt: skip


def part_path(out_dir: str, name: str, clip: int) -> str:
    """`<out>/parts/<name>_<clip>.npz`; name is a method or `reference` (the real clip)."""
    return os.path.join(out_dir, PARTS, f"{name}_{clip}.npz")


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


def _cell(row: dict, key: str, fmt: str, skipped: dict) -> str:
    value = row.get(key)
    if value is None:
        return "skipped" if SKIP_KEYS.get(key) in skipped else "n/a"
    if key.endswith("_per_100_frames"):  # a slope, with its standard error
        stderr = row[key.replace("_per_100_frames", "_stderr")]
        return f"{format(value, fmt)} ± {format(stderr, fmt.lstrip('+'))}"
    return format(value, fmt)


def markdown_table(methods: dict[str, dict], skipped: dict[str, str]) -> str:
    """One row per method, one column per metric ("skipped" where its weights are missing)."""
    header = "| method | " + " | ".join(c for c, _, _ in COLUMNS) + " |\n"
    rule = "|---" * (len(COLUMNS) + 1) + "|\n"
    rows = [
        f"| {method} | " + " | ".join(_cell(row, k, fmt, skipped) for _, k, fmt in COLUMNS) + " |"
        for method, row in methods.items()
    ]
    return header + rule + "\n".join(rows) + "\n"


def _leo_section(leo: dict) -> str:
    lines = []
    if "animator" in leo:
        a = leo["animator"]
        lines += [
            f"\n## LEO animator self-reconstruction ({a['videos']} held-out videos x "
            f"{a['frames']} frames; {a['workdir']})\n",
            "| method | L1 | PSNR (dB) | SSIM |",
            "|---|---|---|---|",
        ]
        for name in ("animator", "copy_source"):
            r = a[name]
            lines.append(f"| {name} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.3f} |")
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


def markdown_report(metrics: dict, videos: list[str] = ()) -> str:
    """report.md: settings line, the table, skipped notes, figures and sample videos."""
    s = metrics.get("settings", {})
    parts = []
    if metrics.get("methods"):
        parts.append(
            f"# Evaluation of {s.get('checkpoint', '?')}\n\n"
            f"Self-reenactment of {s.get('clips')} clips x {s.get('frames')} frames "
            f"(data: {s.get('data')}), {s.get('steps')} DDIM steps, plan {s.get('plan')}, "
            f"seed {s.get('seed')}. Means over frames 1.. (frame 0 is the source); the slope is "
            "per 100 frames of distance from the anchor; TDE is the temporal difference error "
            "(consecutive-frame change vs ground truth's).\n\n"
        )
        parts.append(markdown_table(metrics["methods"], metrics.get("skipped", {})))
        real = metrics.get("real", {})
        if "consecutive_difference_mean" in real:
            cd = {m: r.get("consecutive_difference_mean") for m, r in metrics["methods"].items()}
            parts.append(
                "\nMean consecutive-frame difference: real "
                f"{real['consecutive_difference_mean']:.4f}; "
                + ", ".join(f"{m} {v:.4f}" for m, v in cd.items() if v is not None)
                + ".\n"
            )
        if metrics.get("skipped"):
            parts.append("\nSkipped metrics:\n\n")
            parts += [f"- {k}: {v}\n" for k, v in sorted(metrics["skipped"].items())]
        parts.append("\n" + "\n".join(f"![{label}]({png})" for _, label, png in PLOTS) + "\n")
        if videos:
            parts.append(
                "\nSample videos (source | landmarks | real | methods in table order):\n\n"
            )
            parts += [f"- [{v}]({v})\n" for v in videos]
    parts.append(_leo_section(metrics.get("leo", {})))
    return "".join(parts)


def write_plots(out_dir: str, methods: dict[str, dict], title: str) -> list[str]:
    """The drift, PSNR and SSIM curves against distance from the anchor, one line per method."""
    paths = []
    for metric, label, png in PLOTS:
        series = {m: tuple(map(np.asarray, r["curves"][metric])) for m, r in methods.items()}
        path = os.path.join(out_dir, png)
        write_line_plot(
            path,
            series,
            title=f"{label} vs distance from the anchor ({title})",
            xlabel="distance from the anchor (frames)",
            ylabel=label,
        )
        paths.append(path)
    return paths


def write_report(out_dir: str, metrics: dict, videos: list[str] = ()) -> list[str]:
    """Writes metrics.json, report.md and (with method results) the plots; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "metrics.json"), os.path.join(out_dir, "report.md")]
    tmp = f"{paths[0]}.tmp"
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=1)
    os.replace(tmp, paths[0])
    with open(paths[1], "w") as f:
        f.write(markdown_report(metrics, videos))
    if metrics.get("methods"):
        s = metrics.get("settings", {})
        paths += write_plots(
            out_dir, metrics["methods"], f"{s.get('clips')} clips x {s.get('frames')} frames"
        )
    return paths
