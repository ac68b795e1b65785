"""The report's matplotlib figures: line plots with seed bands, the frame strip, TensorBoard."""

import glob

import numpy as np

from anchored_jax.evaluation.curve_plots import write_line_plot
from anchored_jax.evaluation.frame_strip import (
    strip_columns,
    write_frame_strip,
    write_tensorboard_images,
)
from anchored_jax.evaluation.segment_metrics import segment_owner_T
from anchored_jax.sampling.segment_plan import plan_segments


def test_line_plot_draws_lines_bands_and_a_legend_beside_the_axes(tmp_path):
    x = np.array([1.0, 4.0, 16.0, 64.0])
    series = {"a": (x, np.array([1.0, 2.0, 3.0, 4.0])), "b": (x, np.array([4.0, 3.0, 2.0, 1.0]))}
    path = str(tmp_path / "plot.png")
    pixels = write_line_plot(path, series, bands={"a": np.full(4, 0.5)}, log_x=True,
                             title="a long title " * 12, xlabel="x", ylabel="y")  # fmt: skip
    assert pixels.shape == (440, 720, 3) and pixels.dtype == np.uint8
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    for colour in ((31, 119, 180), (255, 127, 14)):  # matplotlib's C0 and C1 lines
        assert np.all(pixels == colour, axis=-1).sum() > 20
    # The band: C0 at 20 % on white, somewhere between the lines.
    band = np.round(255 - 0.2 * (255 - np.array([31, 119, 180])))
    assert (np.abs(pixels.astype(int) - band).max(-1) <= 2).sum() > 200
    # The legend's text lies right of the axes: the right fifth of the image has dark pixels
    # only beside the plot, never across the title row at the top.
    assert (pixels[100:300, -140:] < 100).any()


def test_strip_columns_straddle_joins():
    owner = segment_owner_T(plan_segments(65, 5, 0, "contiguous"))  # joins after 4, 8, ...
    columns = strip_columns(owner)
    assert columns == [1, 2, 16, 17, 32, 33, 64]
    assert owner[16] != owner[17] and owner[32] != owner[33]
    single = segment_owner_T(plan_segments(5, 5, 0, "contiguous"))
    assert strip_columns(single) == [1, 2, 4]  # no join: T/4 = 1, T/2 = 2 and the last frame


def test_frame_strip_and_its_tensorboard_image(tmp_path):
    owner = segment_owner_T(plan_segments(33, 5, 0, "contiguous"))
    rng = np.random.default_rng(0)
    rows = {n: rng.integers(0, 256, (33, 16, 16, 3), np.uint8) for n in ("real", "a", "b")}
    image = write_frame_strip(str(tmp_path / "strip.png"), rows, strip_columns(owner), owner,
                              "title")  # fmt: skip
    columns = len(strip_columns(owner))
    assert image.shape == (110 * 3 + 60, 110 * columns + 130, 3)
    write_tensorboard_images(str(tmp_path / "tb"), {"frame_strip/contiguous": image})
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    (events,) = glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    tags = [v.tag for e in EventFileLoader(events).Load() for v in e.summary.value]
    assert tags == ["frame_strip/contiguous"]
