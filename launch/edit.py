r"""Editing by re-rendering: the same noise and anchor, one changed condition.

  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit freeze_pose
  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit mouth --amount 2
  python -m launch.edit --checkpoint runs/sdit_tiny --driving synthetic:0 --edit swap \
      --other_source synthetic:3
  python -m launch.edit ... --edit interpolate --other_source synthetic:3 --amount 0.5
  python -m launch.edit ... --edit retime --amount 0.5     # half speed: twice the frames
  python -m launch.edit ... --edit brows --amount 0.03     # brows raised by 3% of the height

Renders the unedited video and the edited one with the same seed and writes
`<out>` (edited), `<out>_side_by_side.mp4` (source | edited landmarks | unedited | edited) and
a PNG grid. `swap` re-renders with another source (identity and anchor); `interpolate`
conditions on the mix of the two sources' identity embeddings (generated anchor, so neither
source image pins the frames).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.sampling import motion_edits  # noqa: E402
from anchored_jax.sampling.sampler_settings import SamplerSettings  # noqa: E402
from anchored_jax.sampling.segment_plan import plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import (  # noqa: E402
    generate_video,
    training_window_s,
)
from anchored_jax.training.inference_checkpoint import load_sdit_for_inference  # noqa: E402
from launch.reenact import (  # noqa: E402
    ReenactError,
    load_driving,
    load_source_image,
    write_outputs,
)

EDITS = ("swap", "interpolate", "mouth", "freeze_pose", "brows", "retime")


def edited_inputs(edit: str, amount: float, landmarks_TLC, frame_times_T):
    """The driving track and frame times after a motion edit (unchanged for identity edits)."""
    if edit == "mouth":
        return motion_edits.scale_mouth_motion(landmarks_TLC, amount), frame_times_T
    if edit == "freeze_pose":
        return motion_edits.freeze_head_pose(landmarks_TLC), frame_times_T
    if edit == "brows":
        return motion_edits.offset_region(landmarks_TLC, "brows", (0.0, -amount)), frame_times_T
    if edit == "retime":
        if not amount > 0:
            raise ReenactError(f"--amount: retime needs a speed > 0, got {amount}")
        span = frame_times_T[-1]
        step = (frame_times_T[1] - frame_times_T[0]) * amount
        new_times = np.arange(0.0, span + 1e-9, step)
        return motion_edits.retime(landmarks_TLC, frame_times_T, new_times), new_times
    return landmarks_TLC, frame_times_T


def render_edit(
    loaded,
    *,
    driving: str,
    edit: str,
    amount: float = 1.0,
    source: str | None = None,
    other_source: str | None = None,
    frames: int | None = 64,
    num_steps: int = 20,
    seed: int = 0,
    plan_kind: str = "contiguous",
) -> dict:
    """Renders the unedited and the edited video; returns both with their inputs."""
    if edit not in EDITS:
        raise ReenactError(f"--edit: expected one of {list(EDITS)}, got {edit!r}")
    config, graphdef, params = loaded
    landmarks_TLC, fps, real_THWC = load_driving(driving, config, frames, 25.0)
    if source is None and real_THWC is None:
        raise ReenactError("--source: needed unless --driving is a synthetic video")
    source_HWC = real_THWC[0] if source is None else load_source_image(source, config)
    other_HWC = None
    if edit in ("swap", "interpolate"):
        if other_source is None:
            raise ReenactError(f"--other_source: the {edit} edit needs a second source")
        other_HWC = load_source_image(other_source, config)
    times_T = np.arange(len(landmarks_TLC)) / fps
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    K = config.data.clip_frames
    anchor = "generated" if edit == "interpolate" else "known"
    # The anchor gap is capped at the training window, as reenact and evaluate do by default.
    settings = SamplerSettings(
        anchor=anchor, num_steps=num_steps, max_anchor_gap_s=training_window_s(config)
    )

    def render(landmarks, times, src, mix=None):
        plan = plan_segments(len(landmarks), K, 0, plan_kind, seed=seed)
        video, _ = generate_video(
            graphdef, params, schedule,
            prediction=config.diffusion.prediction, plan=plan, landmarks_TLC=landmarks,
            frame_times_T=times, identity=src, source_HWC=src, settings=settings,
            key=jax.random.key(seed), identity_mix=mix,
        )  # fmt: skip
        return video

    base = render(landmarks_TLC, times_T, source_HWC)
    new_landmarks, new_times = edited_inputs(edit, amount, landmarks_TLC, times_T)
    if edit == "swap":
        edited = render(landmarks_TLC, times_T, other_HWC)
    elif edit == "interpolate":
        edited = render(landmarks_TLC, times_T, source_HWC, mix=(other_HWC, float(amount)))
    else:
        edited = render(new_landmarks, new_times, source_HWC)
    return dict(
        base=base,
        edited=edited,
        landmarks=new_landmarks,
        times=new_times,
        source=source_HWC if edit != "swap" else other_HWC,
        fps=fps,
    )


def define_flags() -> None:
    """Defines the command-line flags (only when run as a command)."""
    flags.DEFINE_string("checkpoint", None, "Training workdir or exported checkpoint.")
    flags.DEFINE_string("driving", None, "Landmarks .npz/.npy, or synthetic:<id>.")
    flags.DEFINE_string("source", None, "Source image, or synthetic:<id> (default: driving's).")
    flags.DEFINE_string("other_source", None, "Second source for swap / interpolate.")
    flags.DEFINE_enum("edit", None, EDITS, "Which edit.")
    flags.DEFINE_float("amount", 1.0, "mouth factor | brow raise | retime speed | mix weight.")
    flags.DEFINE_integer("frames", 64, "Frames of the unedited video.")
    flags.DEFINE_integer("steps", 20, "DDIM steps.")
    flags.DEFINE_integer("seed", 0, "Noise seed, shared by both renders.")
    flags.DEFINE_string("out", "edit.mp4", "Output mp4 path (the edited video).")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.checkpoint or not FLAGS.driving or not FLAGS.edit:
            raise ReenactError("--checkpoint, --driving and --edit are required")
        result = render_edit(
            load_sdit_for_inference(FLAGS.checkpoint), driving=FLAGS.driving, edit=FLAGS.edit,
            amount=FLAGS.amount, source=FLAGS.source, other_source=FLAGS.other_source,
            frames=FLAGS.frames, num_steps=FLAGS.steps, seed=FLAGS.seed,
        )  # fmt: skip
    except ValueError as e:
        sys.exit(f"error: {e}")
    base, edited = result["base"], result["edited"]
    if len(base) != len(edited):  # retime: show the unedited video at the edited frame rate
        picks = np.round(np.linspace(0, len(base) - 1, len(edited))).astype(int)
        base = base[picks]
    paths = write_outputs(
        FLAGS.out, edited, result["source"], result["landmarks"], result["fps"], 128, base
    )
    print(f"wrote {', '.join(paths)} ({FLAGS.edit}, {len(edited)} frames)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
