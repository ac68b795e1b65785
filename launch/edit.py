r"""Editing by re-rendering: the same noise and anchor, one changed condition.

  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit freeze_pose
  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit mouth --amount 2
  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit swap \
      --other_source synthetic:3
  python -m launch.edit ... --edit interpolate --other_source synthetic:3 --amount 0.5
  python -m launch.edit ... --edit retime --amount 0.5     # half speed: twice the frames
  python -m launch.edit ... --edit brows --amount 0.03     # brows raised by 3% of the height

Renders the unedited video and the edited one with the same seed
(`anchored_jax.pipelines.editing`) and writes `<out>` (edited), `<out>_side_by_side.mp4`
(source | edited landmarks | unedited | edited) and a PNG grid. Sampler settings are the run's
`sampling` section, `--steps` overriding its step count.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from anchored_jax.pipelines.checkpoints import load_sdit  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from anchored_jax.pipelines.editing import EDITS, NEEDS_OTHER_SOURCE, render_edit  # noqa: E402
from anchored_jax.pipelines.reenactment import sampler_settings  # noqa: E402
from data_pipelines.inference_inputs import (  # noqa: E402
    InputError,
    check_frames,
    load_driving_track,
    load_source_image,
)
from data_pipelines.output_videos import PanelVideos, render_landmarks, to_display  # noqa: E402
from data_pipelines.video_writing import check_output_video  # noqa: E402


def define_flags() -> None:
    """Defines the command-line flags (only when run as a command)."""
    flags.DEFINE_string("checkpoint", None, "Training workdir or exported checkpoint.")
    flags.DEFINE_string("driving", None, "Landmarks .npz/.npy, or synthetic:<id>.")
    flags.DEFINE_string("source", None, "Source image, or synthetic:<id> (default: driving's).")
    flags.DEFINE_string("other_source", None, "Second source for swap / interpolate.")
    flags.DEFINE_string("edit", None, f"Which edit: {', '.join(EDITS)}.")
    flags.DEFINE_float("amount", 1.0, "mouth factor | brow raise | retime speed | mix weight.")
    flags.DEFINE_integer("frames", 64, "Frames of the unedited video.")
    flags.DEFINE_integer("steps", None, "Solver steps (default: the run's sampling.num_steps).")
    flags.DEFINE_integer("seed", 0, "Noise seed, shared by both renders.")
    flags.DEFINE_string("out", "edit.mp4", "Output video path (the edited video).")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.checkpoint or not FLAGS.driving or not FLAGS.edit:
            raise InputError("--checkpoint, --driving and --edit are required")
        if FLAGS.edit not in EDITS:
            raise InputError(f"--edit: expected one of {list(EDITS)}, got {FLAGS.edit!r}")
        if FLAGS.edit in NEEDS_OTHER_SOURCE and not FLAGS.other_source:
            raise InputError(f"--other_source: the {FLAGS.edit} edit needs a second source")
        if FLAGS.edit == "retime" and not FLAGS.amount > 0:
            raise InputError(f"--amount: retime needs a speed > 0, got {FLAGS.amount}")
        check_frames(FLAGS.frames)
        if FLAGS.steps is not None and FLAGS.steps < 1:
            raise InputError(f"--steps: expected >= 1, got {FLAGS.steps}")
        check_output_video(FLAGS.out)
        model = load_sdit(FLAGS.checkpoint)
        config = model.config
        track = load_driving_track(FLAGS.driving, config, FLAGS.frames, 25.0)
        if FLAGS.source is None and track.read_real is None:
            raise InputError("--source: needed unless --driving is a synthetic video")
        source_HWC = (
            track.read_real(0, 1)[0]
            if FLAGS.source is None
            else load_source_image(FLAGS.source, config)
        )
        other = FLAGS.other_source
        other_HWC = load_source_image(other, config, "--other_source") if other else None
        result = render_edit(
            model, source_HWC, track.landmarks_TLC, fps=track.fps, edit=FLAGS.edit,
            amount=FLAGS.amount, other_HWC=other_HWC, seed=FLAGS.seed,
            settings=sampler_settings(config, num_steps=FLAGS.steps),
        )  # fmt: skip
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    base, edited = result["base"], result["edited"]
    if len(base) != len(edited):  # retime: show the unedited video at the edited frame rate
        picks = np.round(np.linspace(0, len(base) - 1, len(edited))).astype(int)
        base = base[picks]
    display = 128
    with PanelVideos(FLAGS.out, track.fps, display, total_frames=len(edited)) as videos:
        videos.append(edited, [to_display(result["source"][None], display),
                               render_landmarks(result["landmarks"], display),
                               to_display(base, display)])  # fmt: skip
        paths = videos.close()
    print(f"wrote {', '.join(paths)} ({FLAGS.edit}, {len(edited)} frames)")


if __name__ == "__main__":
    define_flags()
    run(main)
