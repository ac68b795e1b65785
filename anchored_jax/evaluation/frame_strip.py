"""The frame strip: a few frames of every method side by side, near and far from the anchor.

Numbers say how much segments disagree; the strip shows what that looks like. Rows are the
real video and each method, columns a few frames: the first two after the anchor, then the two
frames on either side of a segment join near a quarter and near half of the video (so a seam
is two neighbouring panels), and the last frame. Each column is titled with its frame index
and the segment that owns it, so a join shows as a change of segment between neighbours. The
strip is written as a PNG and, through clu's metric writer, as a TensorBoard image.
"""

from __future__ import annotations

import os

import numpy as np

from anchored_jax.evaluation.curve_plots import new_figure, save_figure
from anchored_jax.evaluation.segment_metrics import ANCHOR_OWNER, join_masks

PANEL_PX = 110  # on-screen size of one frame in the strip


def strip_columns(owner_T: np.ndarray) -> list[int]:
    """Frame indices to show: 1, 2, each side of the join at or after T/4 and T/2, and T-1.

    Without a join past a target (a single segment), the target frame itself is shown.
    """
    T = len(owner_T)
    join_T1, _ = join_masks(owner_T)
    frames = [1, 2]
    for target in (T // 4, T // 2):
        after = np.flatnonzero(join_T1[max(target, 1) :])
        if after.size:
            t = max(target, 1) + int(after[0])
            frames += [t, t + 1]
        else:
            frames.append(target)
    frames.append(T - 1)
    return sorted({f for f in frames if 1 <= f < T})


def write_frame_strip(
    path: str,
    rows: dict[str, np.ndarray],
    columns: list[int],
    owner_T: np.ndarray,
    title: str,
) -> np.ndarray:
    """Draws `rows` (name -> uint8 video `[T, H, W, 3]`) at `columns`; returns the pixels."""
    fig = new_figure((PANEL_PX * len(columns) + 130, PANEL_PX * len(rows) + 60))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (name, video) in enumerate(rows.items()):
        for c, t in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(video[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                owner = "anchor" if owner_T[t] == ANCHOR_OWNER else f"segment {owner_T[t]}"
                ax.set_title(f"frame {t}\n{owner}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def write_tensorboard_images(logdir: str, images: dict[str, np.ndarray]) -> None:
    """Writes `name -> uint8 [H, W, 3]` images at step 0 to TensorBoard event files in logdir.

    Imported here: clu's TensorBoard writer loads TensorFlow, which nothing else here needs.
    """
    from clu import metric_writers

    os.makedirs(logdir, exist_ok=True)
    writer = metric_writers.create_default_writer(logdir, asynchronous=False)
    writer.write_images(0, {k: v[None] for k, v in images.items()})
    writer.flush()
    writer.close()
