r"""Reenactment: animates one source image with a driving landmark sequence.

  python -m launch.reenact --checkpoint runs/sdit_tiny --driving synthetic:0 --frames 256 \
      --out runs/sdit_tiny/reenact/out.mp4
  python -m launch.reenact --checkpoint export/ --source face.png --driving motion.npz \
      --plan strided --steps 20 --guidance 1.5,1.0 --out out.mp4
  python -m launch.reenact --checkpoint runs/sdit_tiny --source photo.jpg --driving video.mp4 \
      --out out.mp4

- `--checkpoint`: a training workdir or an exported inference checkpoint;
- `--source`: an image file, or `synthetic:<id>` (frame 0 of a held-out synthetic video);
  omitted with a synthetic driving video, it is that video's frame 0 (self-reenactment). An
  image of the model's frame size is used as is; any other photo has its face found
  (FaceMesh), cropped as `prepare_data` crops training clips, and resized;
- `--driving`: a video file, whose FaceMesh landmarks are extracted with a progress bar and
  written to `<out stem>.landmarks.npz` (reusable as `--driving`); a landmark file (`.npz` in
  the project's format, or a `.npy` `[T, L, 3]` array at `--fps`); or `synthetic:<id>`, a
  held-out synthetic video (identities and motions never seen in training). FaceMesh's 468
  points drive a 68-point model after conversion to iBUG-68 order (`landmark_layouts`).

The face work on a photo or video is done before the model is loaded, so an input without a
face is refused in one line first.

Sampler flags left unset take the run's `sampling` config section. A model that denoises VAE
latents (S/B/L/XL) encodes the source and decodes its video with `--vae` (a diffusers folder),
by default the run's `data.vae`.

The source is the known anchor, frame 0 of the output; frame t is driven by landmarks t. Writes
`--out` (the generated video) and `<out>_side_by_side.mp4` (source | driving landmarks | output)
plus a PNG grid of 8 evenly spaced frames. Frames are written as each window of segments is
sampled (`anchored_jax.pipelines.reenactment`), so memory does not grow with `--frames`.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags, logging  # noqa: E402

from anchored_jax.pipelines import reenactment  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_sdit  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from anchored_jax.sampling.sampler_settings import SamplerSettings  # noqa: E402
from anchored_jax.sampling.segment_plan import PLAN_KINDS  # noqa: E402
from data_pipelines.inference_inputs import (  # noqa: E402
    SYNTHETIC_PREFIX,
    InputError,
    SourcePhoto,
    check_frames,
    extract_driving_landmarks,
    is_video_spec,
    load_driving_track,
    load_source_image,
    read_source_photo,
)
from data_pipelines.output_videos import PanelVideos, render_landmarks, to_display  # noqa: E402
from data_pipelines.video_writing import check_output_video  # noqa: E402

WRITE_FRAMES = 64  # frames converted for display and encoded at a time
# The sampler setting each flag overrides (the settings' errors name the setting).
SETTING_FLAGS = dict(
    plan="--plan", method="--method", known_anchor_mode="--known_anchor_mode",
    num_steps="--steps", identity_scale="--guidance", landmark_scale="--guidance",
    chunk_size="--chunk_size", max_anchor_gap_s="--max_anchor_gap",
)  # fmt: skip


def parse_guidance(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    try:
        identity_scale, landmark_scale = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"--guidance: expected 'identity,landmarks' scales such as 1.5,1.0, got {text!r}"
        ) from None
    return identity_scale, landmark_scale


def progress_bar(total: int, desc: str):
    """A tqdm bar advanced by the sampler's in-loop callback; closed by the caller."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr)
    return bar, lambda index: bar.update(1)


def read_inputs(source: str | None, driving: str, out: str) -> tuple:
    """`(source, driving)` with the face work done, before any model is loaded: a photo is
    read and its face found (`SourcePhoto`), a driving video becomes its landmark file."""
    from data_pipelines.face_landmarker import FaceMeshLandmarker

    if source is None and not driving.startswith(SYNTHETIC_PREFIX):
        raise InputError("--source: needed unless --driving is a synthetic video")
    needs_faces = (source is not None and not source.startswith(SYNTHETIC_PREFIX)) or (
        is_video_spec(driving)
    )
    landmarker = FaceMeshLandmarker() if needs_faces else None  # one model load for both
    if source is not None and not source.startswith(SYNTHETIC_PREFIX):
        source = read_source_photo(source, "--source", landmarker=landmarker)
    if is_video_spec(driving):
        driving = extract_driving_landmarks(driving, out, landmarker=landmarker)
    return source, driving


def reenact(
    checkpoint: str,
    driving: str,
    out: str,
    *,
    source: str | SourcePhoto | None = None,
    frames: int | None = None,
    fps: float = 25.0,
    plan_kind: str | None = None,
    settings: SamplerSettings | None = None,
    seed: int = 0,
    display: int = 128,
    devices: int = 0,
    vae: str = "",
    window_segments: int = 0,
    loaded=None,
) -> dict:
    """Loads, reenacts and writes the videos; returns the written paths and timings.

    settings: None = the run's `sampling` section (`reenactment.sampler_settings`);
    plan_kind: None = `settings.plan`.
    """
    check_frames(frames)
    check_output_video(out)  # before any load: a bad path never costs a generation
    if loaded is None or is_video_spec(driving):
        source, driving = read_inputs(source, driving, out)
    model = loaded or load_sdit(checkpoint)
    config = model[0]
    settings = settings or reenactment.sampler_settings(config)
    codec = reenactment.model_codec(config, vae)
    track = load_driving_track(driving, config, frames, fps)
    if source is None:
        if track.read_real is None:
            raise InputError("--source: needed unless --driving is a synthetic video")
        source_HWC = track.read_real(0, 1)[0]
    else:
        source_HWC = load_source_image(source, config)
    T = track.num_frames
    windows = reenactment.num_windows(model, T, settings, plan_kind=plan_kind, devices=devices,
                                      window_segments=window_segments)  # fmt: skip
    steps = settings.num_steps
    bar, tick = progress_bar(windows * steps, f"{settings.method} T={T} windows={windows}")
    source_u8 = to_display(source_HWC[None], display)
    start = time.perf_counter()
    written = 0
    with PanelVideos(out, track.fps, display, total_frames=T) as videos:
        try:
            for video_THWC in reenactment.stream_reenactment(
                model, source_HWC, track.landmarks_TLC, fps=track.fps, settings=settings,
                plan_kind=plan_kind, seed=seed, devices=devices, codec=codec,
                window_segments=window_segments, progress=tick,
            ):  # fmt: skip
                for i in range(0, len(video_THWC), WRITE_FRAMES):
                    chunk = video_THWC[i : i + WRITE_FRAMES]
                    lo, hi = written, written + len(chunk)
                    panels = [source_u8, render_landmarks(track.landmarks_TLC[lo:hi], display)]
                    if track.read_real is not None:
                        panels.append(to_display(track.read_real(lo, hi), display))
                    videos.append(chunk, panels)
                    written = hi
        finally:
            bar.close()
        paths = videos.close()
    seconds = time.perf_counter() - start
    return dict(paths=paths, seconds=seconds, frames=written)


def define_flags() -> None:
    """Defines the command-line flags (only when run as a command)."""
    flags.DEFINE_string("checkpoint", None, "Training workdir or exported checkpoint.")
    flags.DEFINE_string("source", None, "Source image file, or synthetic:<held-out id>.")
    flags.DEFINE_string("driving", None, "Video file, landmarks .npz/.npy, or synthetic:<id>.")
    flags.DEFINE_integer("frames", None, "Frames to generate (default: the driving length).")
    flags.DEFINE_float("fps", 25.0, "Frame rate of a .npy landmark array.")
    flags.DEFINE_string("plan", None, f"How frames are split into segments: {PLAN_KINDS}.")
    # Sampler flags: unset (None) takes the run's `sampling` config section.
    flags.DEFINE_string("method", None, "anchored | independent | autoregressive.")
    flags.DEFINE_integer("steps", None, "Solver steps (sampling.num_steps).")
    flags.DEFINE_string(
        "guidance", None, "CFG scales: identity,landmarks (landmark CFG sharpens motion)."
    )
    flags.DEFINE_string("known_anchor_mode", None, "How the source anchor is held: clean|renoise.")
    flags.DEFINE_integer("chunk_size", None, "Segments denoised at once per device (memory bound).")
    flags.DEFINE_integer("devices", 0, "Local devices to split the segments over; 0 = all.")
    flags.DEFINE_string("vae", "", "Latent models: the diffusers VAE folder (default data.vae).")
    flags.DEFINE_float(
        "max_anchor_gap", None,
        "Seconds; >0 moves far segments closer to the anchor in time (with a warning); "
        "0 = true times; -1 = the run's training range.",
    )  # fmt: skip
    flags.DEFINE_integer("seed", 0, "Noise seed; the same seed gives the same video.")
    flags.DEFINE_string("out", "reenact.mp4", "Output video path (.mp4, .mkv, .webm, .mov, .avi).")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")


def check_flags(FLAGS) -> dict:
    """Every flag checked (one line naming it) before anything is loaded."""
    if not FLAGS.checkpoint or not FLAGS.driving:
        raise InputError("--checkpoint and --driving are required")
    check_frames(FLAGS.frames)
    check_output_video(FLAGS.out)
    for name, lowest in (("steps", 1), ("chunk_size", 1), ("display_size", 8), ("devices", 0)):
        value = getattr(FLAGS, name)
        if value is not None and value < lowest:
            raise InputError(f"--{name}: expected >= {lowest}, got {value}")
    if not FLAGS.fps > 0:
        raise InputError(f"--fps: expected > 0, got {FLAGS.fps}")
    identity_scale, landmark_scale = parse_guidance(FLAGS.guidance)
    overrides = dict(
        plan=FLAGS.plan, method=FLAGS.method, anchor="known",
        known_anchor_mode=FLAGS.known_anchor_mode, num_steps=FLAGS.steps,
        identity_scale=identity_scale, landmark_scale=landmark_scale,
        chunk_size=FLAGS.chunk_size, max_anchor_gap_s=FLAGS.max_anchor_gap,
    )  # fmt: skip
    # The values themselves, checked by the settings' own rules before any load.
    defaults = {k: v for k, v in overrides.items() if v is not None}
    defaults["max_anchor_gap_s"] = max(defaults.get("max_anchor_gap_s", 0.0), 0.0)
    try:
        SamplerSettings(**defaults)
    except ValueError as e:  # names sampling.<field>: say the flag the user typed instead
        message = str(e)
        for field, flag in SETTING_FLAGS.items():
            message = message.replace(f"sampling.{field}:", f"{flag}:")
        raise InputError(message) from None
    return overrides


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    FLAGS = flags.FLAGS
    try:
        overrides = check_flags(FLAGS)
        source, driving = read_inputs(FLAGS.source, FLAGS.driving, FLAGS.out)
        model = load_sdit(FLAGS.checkpoint)
        settings = reenactment.sampler_settings(model.config, **overrides)
        result = reenact(
            FLAGS.checkpoint, driving, FLAGS.out, source=source,
            frames=FLAGS.frames, fps=FLAGS.fps, settings=settings,
            seed=FLAGS.seed, display=FLAGS.display_size, devices=FLAGS.devices, vae=FLAGS.vae,
            loaded=model,
        )  # fmt: skip
    except (ValueError, OSError) as e:  # input, checkpoint, landmark-file and path errors
        sys.exit(f"error: {e}")
    print(
        f"wrote {', '.join(result['paths'])}: {result['frames']} frames in "
        f"{result['seconds']:.1f} s ({result['frames'] / result['seconds']:.1f} frames/s)"
    )


if __name__ == "__main__":
    define_flags()
    run(main)
