"""Line plots for the reports, drawn with matplotlib's Agg backend (no display needed).

One kind of figure serves the evaluation report, the sweep report and the LMDM comparison:
a metric against a distance or time, one line per method, optionally with a shaded band (the
spread over seeds). The legend sits outside the axes, right of the plot, so it never covers
the title or the curves. Figures are built on a `Figure` object rather than through pyplot, so
nothing global is touched and plots can be drawn from any thread. PNGs are written as RGB of
exactly `size` pixels.
"""

from __future__ import annotations

import os
import textwrap

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: files only, never a window

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from PIL import Image  # noqa: E402

DPI = 100


def new_figure(size: tuple[int, int]) -> Figure:
    """A figure of `size` (width, height) pixels with an Agg canvas attached."""
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """The rendered figure as uint8 RGB `[H, W, 3]`."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str) -> np.ndarray:
    """Writes the figure as an RGB PNG and returns its pixels."""
    pixels = figure_to_array(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_line_plot(
    path: str,
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 440),
    bands: dict[str, np.ndarray] | None = None,
    log_x: bool = False,
) -> np.ndarray:
    """Draws each `name -> (x, y)` as a line with markers and writes a PNG to `path`.

    bands: `name -> half-width` arrays (same length as that series' y): shaded y ± half-width.
    Returns the PNG's pixels.
    """
    fig = new_figure(size)
    ax = fig.add_subplot()
    for i, (name, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        colour = f"C{i % 10}"
        ax.plot(x, y, marker="o", markersize=3, linewidth=1.5, color=colour, label=name)
        if bands and name in bands:
            half = np.asarray(bands[name], np.float64)
            ax.fill_between(x, y - half, y + half, color=colour, alpha=0.2, linewidth=0)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # About 7 px per character at this font size, and the title is centred on the axes, which
    # the legend leaves about 3/4 of the width: wrap to that rather than run past the figure.
    ax.set_title(textwrap.fill(title, max(40, size[0] * 3 // 4 // 7)), fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.9")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, path)
