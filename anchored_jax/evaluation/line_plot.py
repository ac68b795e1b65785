"""A small line-plot writer (PNG through Pillow) for the consistency study's curves.

The study needs one kind of figure: a metric against distance from the anchor, one line per
method, with axes, ticks and a legend. Pillow draws that directly, so the project needs no
plotting library.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def _ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    step = 10 ** np.floor(np.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    return np.arange(np.ceil(lo / step) * step, hi + 1e-9 * step, step)


def write_line_plot(
    path: str,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 440),
) -> None:
    """Draws each `name -> (x, y)` as a line with markers and writes a PNG to `path`."""
    width, height = size
    left, right, top, bottom = 70, 20, 36, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    ys = ys[np.isfinite(ys)]
    x_lo, x_hi = float(xs.min()), float(xs.max())
    y_lo, y_hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    y_pad = 0.05 * (y_hi - y_lo or 1.0)
    y_lo, y_hi = y_lo - y_pad, y_hi + y_pad
    x_hi = x_hi if x_hi > x_lo else x_lo + 1.0

    def to_px(x, y):
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = top + (y_hi - y) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for tick in _ticks(y_lo, y_hi):
        _, py = to_px(x_lo, tick)
        draw.line((left - 4, py, left, py), fill="black")
        draw.line((left, py, width - right, py), fill=(230, 230, 230))
        draw.text((4, py - 6), f"{tick:.3g}", fill="black", font=font)
    for tick in _ticks(x_lo, x_hi):
        px, _ = to_px(tick, y_lo)
        draw.line((px, height - bottom, px, height - bottom + 4), fill="black")
        draw.text((px - 10, height - bottom + 8), f"{tick:.4g}", fill="black", font=font)
    draw.text((left, 10), title, fill="black", font=font)
    draw.text(((width - len(xlabel) * 6) // 2, height - 20), xlabel, fill="black", font=font)
    draw.text((4, top - 18), ylabel, fill="black", font=font)
    for i, (name, (x, y)) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [to_px(a, b) for a, b in zip(np.asarray(x, float), np.asarray(y, float))
                  if np.isfinite(b)]  # fmt: skip
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        ly = top + 8 + 14 * i
        draw.line((width - right - 150, ly + 6, width - right - 130, ly + 6), fill=colour, width=3)
        draw.text((width - right - 125, ly), name, fill="black", font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path)
