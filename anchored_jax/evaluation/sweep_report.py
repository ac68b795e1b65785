"""One table and one plot across the variants of an ablation sweep (written by `launch.sweep`).

Each finished variant folder holds `eval.json`: its overrides, its run's last train and held-out
losses and the consistency study's summary per method. The report puts one row per variant:
the losses, PSNR on frames where the face moved for the first method scored (normally
`anchored`) next to the copy-source baseline, and the drift slope against distance from the
anchor (flat, within about 2 standard errors of 0, is the claim). The plot overlays each
variant's PSNR-vs-distance curve. Every number in the table is read from the eval.json files.
"""

from __future__ import annotations

import json
import os

import numpy as np

from anchored_jax.evaluation.curve_plots import write_line_plot

EVAL_FILE = "eval.json"
SWEEP_FILE = "sweep.json"
DONE = "DONE"
REPORT_NAME = "sweep_report"


def _variant_dirs(sweep_dir: str) -> list[str]:
    """Variant folder names: the sweep's own order when sweep.json is there, else sorted."""
    path = os.path.join(sweep_dir, SWEEP_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return list(json.load(f)["variants"])
    return sorted(
        name
        for name in os.listdir(sweep_dir)
        if os.path.exists(os.path.join(sweep_dir, name, EVAL_FILE))
    )


def sweep_rows(sweep_dir: str) -> tuple[list[dict], list[str]]:
    """One row per finished variant (DONE and eval.json), and the names of unfinished ones."""
    if not os.path.isdir(sweep_dir):
        raise ValueError(f"--sweep {sweep_dir}: no such directory")
    rows, missing = [], []
    for name in _variant_dirs(sweep_dir):
        folder = os.path.join(sweep_dir, name)
        if not os.path.exists(os.path.join(folder, DONE)):
            missing.append(name)
            continue
        with open(os.path.join(folder, EVAL_FILE)) as f:
            record = json.load(f)
        methods = record["methods"]
        method = next(m for m in methods if m != "copy_source")
        scored, copy = methods[method], methods["copy_source"]
        train = record.get("train") or {}
        rows.append(
            dict(
                variant=name,
                overrides=record["overrides"],
                train_loss=train.get("train_loss"),
                eval_loss=train.get("eval_loss"),
                eval_loss_ema=train.get("eval_loss_ema"),
                step=train.get("step"),
                method=method,
                psnr_moved=scored["psnr_moved_mean"],
                psnr=scored["psnr_mean"],
                copy_source_psnr_moved=copy["psnr_moved_mean"],
                drift_slope=scored["drift_slope_per_100_frames"],
                drift_slope_stderr=scored["drift_slope_stderr"],
                psnr_curve=scored["curves"]["psnr"],
                copy_source_psnr_curve=copy["curves"]["psnr"],
            )
        )
    return rows, missing


def _number(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(rows: list[dict]) -> str:
    """The sweep's table; slopes are per 100 frames of distance from the anchor."""
    lines = [
        "| variant | overrides | train loss | eval loss (EMA) | method | PSNR, moved frames "
        "| copy-source PSNR, moved | drift slope /100 fr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        overrides = ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items()) or "(base)"
        slope = f"{r['drift_slope']:+.4f} ± {r['drift_slope_stderr']:.4f}"
        lines.append(
            f"| {r['variant']} | {overrides} | {_number(r['train_loss'], '.4f')} | "
            f"{_number(r['eval_loss_ema'], '.4f')} | {r['method']} | "
            f"{_number(r['psnr_moved'], '.2f')} | {_number(r['copy_source_psnr_moved'], '.2f')} "
            f"| {slope} |"
        )
    return "\n".join(lines) + "\n"


def _legend(row: dict) -> str:
    return ("+".join(str(v) for v in row["overrides"].values()) or "base")[:24]


def write_sweep_report(sweep_dir: str, out_dir: str) -> dict:
    """Writes `sweep_report.md`, `.png` (PSNR vs distance per variant) and `.json` to `out_dir`.

    Returns `{"rows", "missing", "table", "files"}`; rows hold the numbers of the table.
    """
    rows, missing = sweep_rows(sweep_dir)
    if not rows:
        raise ValueError(f"--sweep {sweep_dir}: no finished variant (no */{DONE} with {EVAL_FILE})")
    os.makedirs(out_dir, exist_ok=True)
    table = markdown_table(rows)
    note = f"\nNot finished: {', '.join(missing)}.\n" if missing else ""
    files = {k: os.path.join(out_dir, f"{REPORT_NAME}.{k}") for k in ("md", "png", "json")}
    with open(files["md"], "w") as f:
        f.write(f"Sweep {os.path.abspath(sweep_dir)}: {len(rows)} variants.\n\n{table}{note}")
    # The legend has room for about 24 characters: each line is named by its override values.
    series = {}
    for i, r in enumerate(rows):
        label = _legend(r)
        series[label if label not in series else f"{i}:{label}"[:24]] = tuple(
            map(np.asarray, r["psnr_curve"])
        )
    series["copy_source"] = tuple(map(np.asarray, rows[0]["copy_source_psnr_curve"]))
    write_line_plot(
        files["png"],
        series,
        title=f"PSNR vs distance from the anchor ({rows[0]['method']}); legend: override values",
        xlabel="distance from the anchor (frames)",
        ylabel="PSNR (dB)",
    )
    report = dict(rows=rows, missing=missing, table=table, files=files)
    with open(files["json"], "w") as f:
        json.dump(report, f, indent=1)
    return report
