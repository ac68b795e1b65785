"""report.md's text: per plan, a consistency table and a fidelity table, mean ± std over seeds.

Each plan (the segment partition the anchored and independent samplers ran) gets two tables
with one row per method:

- consistency: PSNR, PSNR on moved frames, PSNR per distance bin, the first-to-last quarter
  change, seam ratio, the spread between segments (both regions, face, background), sharpness
  and flicker ratios and AKD, with a `real video` reference row (its own seam ratio and spread
  on the same plan, and the AKD floor of the landmark extractor);
- fidelity: SSIM, L1, LPIPS, face-colour drift and the slopes against distance, TDE, FID, FVD,
  CSIM and AED.

A cell is `mean ± std` over seeds (clips pooled within a seed); `n/a` is a number that is not
defined for that row (copy-source has no seams), `skipped` one whose network or extractor was
not available (the reason is listed under the tables).
"""

from __future__ import annotations

from anchored_jax.evaluation.distance_bins import DISTANCE_BINS

AUTOREGRESSIVE = "autoregressive"
# (column, row key, format); "psnr_by_distance/<bin>" reads a nested key.
CONSISTENCY = (
    ("PSNR (dB)", "psnr_mean", ".2f"),
    ("PSNR, moved", "psnr_moved_mean", ".2f"),
    *((f"PSNR {b}", f"psnr_by_distance/{b}", ".2f") for b, _, _ in DISTANCE_BINS),
    ("PSNR last-first quarter", "psnr_quarter_change", "+.2f"),
    ("seam ratio", "seam_ratio", ".3f"),
    ("spread", "spread", ".4f"),
    ("spread face", "spread_face", ".4f"),
    ("spread bg", "spread_background", ".4f"),
    ("sharpness ratio", "sharpness_ratio", ".3f"),
    ("flicker ratio", "flicker_ratio", ".3f"),
    ("AKD (px)", "akd", ".2f"),
)
FIDELITY = (
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
)
# A missing value of these keys is a skipped metric (its reason is in "skipped").
SKIP_KEYS = {"lpips_mean": "lpips", "tde_mean": "temporal", "fid": "fid", "fvd": "fvd",
             "csim": "csim_aed", "aed": "csim_aed", "akd": "akd", "akd_floor": "akd"}  # fmt: skip
# The real video's reference row: which of its keys fills which column.
REAL_KEYS = {"seam_ratio": "seam_ratio", "spread": "spread", "spread_face": "spread_face",
             "spread_background": "spread_background", "akd": "akd_floor"}  # fmt: skip


def _lookup(row: dict, key: str):
    for part in key.split("/"):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def _cell(mean: dict, std: dict, key: str, fmt: str, skipped: dict) -> str:
    value = _lookup(mean, key)
    if value is None:
        return "skipped" if SKIP_KEYS.get(key) in skipped else "n/a"
    spread = _lookup(std, key)
    text = format(value, fmt)
    return text if spread is None else f"{text} ± {format(spread, fmt.lstrip('+'))}"


def _present(columns, rows: list[dict]) -> list:
    """The columns to show: distance bins only where some row has frames in them."""
    return [c for c in columns if not c[1].startswith("psnr_by_distance/")
            or any(_lookup(r, c[1]) is not None for r in rows)]  # fmt: skip


def _label(method: str, plan: str) -> str:
    if method == AUTOREGRESSIVE and plan != "contiguous":
        return f"{method} (contiguous plan)"
    return method


def plan_tables(plan: str, result: dict, skipped: dict) -> str:
    """The consistency and fidelity tables of one plan (`metrics["plans"][plan]`)."""
    methods = result["methods"]
    means = [m["mean"] for m in methods.values()]
    out = []
    for title, columns in (("Consistency", CONSISTENCY), ("Fidelity", FIDELITY)):
        columns = _present(columns, means)
        lines = [
            f"\n### {title}, plan `{plan}`\n",
            "| method | " + " | ".join(c for c, _, _ in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for method, stats in methods.items():
            cells = [_cell(stats["mean"], stats["std"], k, f, skipped) for _, k, f in columns]
            lines.append(f"| {_label(method, plan)} | " + " | ".join(cells) + " |")
        if title == "Consistency" and result.get("real"):
            real = result["real"]
            cells = [
                _cell(real["mean"], real["std"], REAL_KEYS[k], f, skipped)
                if k in REAL_KEYS else "—"
                for _, k, f in columns
            ]  # fmt: skip
            lines.append("| real video (reference) | " + " | ".join(cells) + " |")
        out.append("\n".join(lines) + "\n")
    return "".join(out)


DEFINITIONS = """
Definitions (docs/evaluation.md): means over frames 1.. (frame 0 is the source, the anchor).
*PSNR a-b*: PSNR of the frames a to b frames from the anchor. *last-first quarter*: mean PSNR
of the last quarter of frames 1..T-1 minus that of the first. *Seam ratio*: mean
|x[t+1] - x[t]| where t and t+1 belong to different segments of the plan, divided by the mean
within segments (about 1 when segments agree; n/a when a plan has no pairs of one kind).
*Spread*: std across segments of each segment's mean colour (face box and background), in
[-1, 1] units. *Sharpness / flicker ratio*: mean |Laplacian| / mean consecutive-frame change
of the output over the real video's (1 = like the real video). *AKD*: landmark distance
between output and real frames, as the extractor sees them; the real row's AKD is the
extractor's floor, its error on real frames against the data's own landmarks.
"""
