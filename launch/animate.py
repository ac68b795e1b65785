r"""LEO's animator: moves a source image with the motion of a driving video.

  python -m launch.animate --checkpoint runs/animator_tiny --source face.png \
      --driving driving.mp4 --mode relative --out out.mp4
  python -m launch.animate --checkpoint runs/animator_tiny --driving synthetic:0 --frames 64

- `--checkpoint`: an animator training workdir (`launch.train --config configs/animator.py`),
  or a directory written by `python -m launch.import_weights lia` (LIA's weights);
- `--source`: an image file, or `synthetic:<id>` (frame 0 of a held-out synthetic video);
  omitted with a synthetic driving video, that video's frame 0. An image of the animator's
  frame size is used as is; any other photo has its face found (FaceMesh), cropped as
  `prepare_data` crops training clips, and resized;
- `--driving`: a video file, a folder of frame images (file-name order, at the animator's
  size), `synthetic:<id>`, or a motion-code file (`.npz` with `codes` [1, T, M] or [T, M], as
  `launch.generate` writes). A video not already at the animator's size is face-cropped per
  frame as `prepare_data` crops training clips: FaceMesh points tracked frame to frame, the
  square box around them enlarged by the margin and smoothed over 9 frames, then resized;
  only its longest run of frames with a face is used. The face work on a photo or a
  non-square video is done before the model is loaded, so an input without a face is refused
  in one line first.
- `--mode`: `relative` or `absolute` (see `anchored_jax.pipelines.leo`).

Editing: to keep a video's motion and change its content, edit its first frame (or take
another face) and pass it as `--source` with the video as `--driving` in relative mode; the
motion codes are the video's, only the appearance is new.

Writes `--out`, `<out>_side_by_side.mp4` (source | driving | output, when driving frames
exist) and `<out>_codes.npz` (the driving motion codes, [1, T, M]); frames are encoded as each
batch is rendered.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from anchored_jax.pipelines import leo  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_model  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from data_pipelines.inference_inputs import (  # noqa: E402
    SYNTHETIC_PREFIX,
    DrivingVideo,
    InputError,
    SourcePhoto,
    check_frames,
    is_video_spec,
    load_driving_frames,
    load_source_image,
    read_driving_video,
    read_source_photo,
)
from data_pipelines.motion_codes import write_code_file  # noqa: E402
from data_pipelines.output_videos import PanelVideos, to_display  # noqa: E402
from data_pipelines.video_writing import check_output_video  # noqa: E402


def read_inputs(source: str | None, driving: str, frames: int | None) -> tuple:
    """`(source, driving)` with the face work done before the animator is loaded: a photo is
    read and its face found, a non-square driving video is face-cropped (`DrivingVideo`)."""
    from data_pipelines.face_landmarker import FaceMeshLandmarker

    photo = source is not None and not source.startswith(SYNTHETIC_PREFIX)
    if not photo and not is_video_spec(driving):
        return source, driving
    landmarker = FaceMeshLandmarker()  # one model load for both
    if photo:
        source = read_source_photo(source, "--source", landmarker=landmarker)
    if is_video_spec(driving):
        driving = read_driving_video(driving, frames, landmarker=landmarker)
    return source, driving


def animate(
    checkpoint: str,
    driving: str | DrivingVideo,
    out: str,
    *,
    source: str | SourcePhoto | None = None,
    mode: str = "relative",
    frames: int | None = None,
    batch_size: int = 16,
    display: int = 128,
    loaded=None,
) -> dict:
    """Loads, animates and writes; returns the paths and the driving codes."""
    if mode not in leo.MODES:
        raise InputError(f"--mode: expected one of {list(leo.MODES)}, got {mode!r}")
    leo.check_batch_size(batch_size)
    check_frames(frames, lowest=1)
    check_output_video(out)
    if loaded is None:
        source, driving = read_inputs(source, driving, frames)
    animator = loaded or load_model(checkpoint, "animator", "--checkpoint")
    config = animator[0]
    driving_THWC, codes_TM, fps = load_driving_frames(
        driving, config, frames, config.model.motion_dim
    )
    if source is None:
        synthetic = isinstance(driving, str) and driving.startswith(SYNTHETIC_PREFIX)
        if driving_THWC is None or not synthetic:
            raise InputError("--source: needed unless --driving is a synthetic video")
        source_HWC = driving_THWC[0]
    else:
        source_HWC = load_source_image(source, config)
    fns = leo.animator_fns(animator)
    start = time.perf_counter()
    if codes_TM is None:
        codes_TM = leo.encode_codes(fns, driving_THWC, batch_size)
    from tqdm import tqdm

    bar = tqdm(total=len(codes_TM), desc=f"animate {mode}", unit="frame", file=sys.stderr)
    source_u8 = to_display(source_HWC[None], display)
    written = 0
    with PanelVideos(out, fps, display) as videos:
        try:
            for chunk in leo.stream_render_codes(
                fns, source_HWC, codes_TM, mode=mode, batch_size=batch_size
            ):
                lo, hi = written, written + len(chunk)
                panels = [source_u8]
                if driving_THWC is not None:
                    panels.append(to_display(driving_THWC[lo:hi], display))
                videos.append(chunk, panels)
                written = hi
                bar.update(len(chunk))
        finally:
            bar.close()
        paths = videos.close()
    seconds = time.perf_counter() - start
    codes_path = f"{os.path.splitext(out)[0]}_codes.npz"
    write_code_file(codes_path, np.asarray(codes_TM)[None])
    return dict(paths=paths + [codes_path], seconds=seconds, codes=np.asarray(codes_TM))


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "Animator workdir or imported LIA directory.")
    flags.DEFINE_string("source", None, "Source image file, or synthetic:<held-out id>.")
    flags.DEFINE_string("driving", None, "Video file, frame folder, codes .npz, synthetic:<id>.")
    flags.DEFINE_string("mode", "relative", "relative | absolute.")
    flags.DEFINE_integer("frames", None, "Frames to animate (default: all driving frames).")
    flags.DEFINE_integer("batch_size", 16, "Frames rendered per generator call.")
    flags.DEFINE_string("out", "animate.mp4", "Output video path.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # keeps orbax's restore chatter off the terminal
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.checkpoint or not FLAGS.driving:
            raise InputError("--checkpoint and --driving are required")
        if FLAGS.display_size < 8:
            raise InputError(f"--display_size: expected >= 8, got {FLAGS.display_size}")
        result = animate(
            FLAGS.checkpoint, FLAGS.driving, FLAGS.out, source=FLAGS.source, mode=FLAGS.mode,
            frames=FLAGS.frames, batch_size=FLAGS.batch_size, display=FLAGS.display_size,
        )  # fmt: skip
    except (ValueError, OSError) as e:  # input, video, checkpoint and path errors
        sys.exit(f"error: {e}")
    n = len(result["codes"])
    print(f"wrote {', '.join(result['paths'])}: {n} frames in {result['seconds']:.1f} s")


if __name__ == "__main__":
    define_flags()
    run(main)
