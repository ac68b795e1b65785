r"""Reenactment: animates one source image with a driving landmark sequence, as one anchored batch.

  python -m launch.reenact --checkpoint runs/sdit_tiny --driving synthetic:0 --frames 256 \
      --out runs/sdit_tiny/reenact/out.mp4
  python -m launch.reenact --checkpoint export/ --source face.png --driving motion.npz \
      --plan strided --steps 20 --guidance 1.5,1.0 --out out.mp4

- `--checkpoint`: a training workdir or an exported inference checkpoint;
- `--source`: an image file of the model's frame size, or `synthetic:<id>` (frame 0 of a
  held-out synthetic video); omitted with a synthetic driving video, it is that video's frame 0
  (self-reenactment);
- `--driving`: a landmark file (`.npz` in the project's format, or a `.npy` `[T, L, 3]` array at
  `--fps`), or `synthetic:<id>`, a held-out synthetic video (identities and motions never seen
  in training).

A model that denoises VAE latents (S/B/L/XL) encodes the source and decodes its video with
`--vae` (a diffusers folder), by default the run's `data.vae`.

The source is the known anchor, frame 0 of the output; frame t is driven by landmarks t. Writes
`--out` (the generated video) and `<out>_side_by_side.mp4` (source | driving landmarks | output)
plus a PNG grid of 8 evenly spaced frames.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.sampling.frame_codec import frame_codec  # noqa: E402
from anchored_jax.sampling.sampler_settings import SamplerSettings  # noqa: E402
from anchored_jax.sampling.segment_plan import PLAN_KINDS, plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import (  # noqa: E402
    generate_video,
    sampler_mesh,
    training_window_s,
)
from anchored_jax.training.inference_checkpoint import load_sdit_for_inference  # noqa: E402
from data_pipelines.landmark_files import load_landmarks  # noqa: E402
from data_pipelines.sources import SyntheticFaceSource  # noqa: E402
from data_pipelines.video_writing import write_video  # noqa: E402

SYNTHETIC_PREFIX = "synthetic:"


class ReenactError(ValueError):
    """A bad input to reenactment; the message is one line naming the flag or file."""


def parse_guidance(text: str) -> tuple[float, float]:
    try:
        identity_scale, landmark_scale = (float(v) for v in text.split(","))
    except ValueError:
        raise ReenactError(
            f"--guidance: expected 'identity,landmarks' scales such as 1.5,1.0, got {text!r}"
        ) from None
    return identity_scale, landmark_scale


def held_out_video(config, video_id: int, num_frames: int) -> SyntheticFaceSource:
    """The held-out (test split) synthetic videos of a run's data config, `num_frames` long."""
    data = config.data
    source = SyntheticFaceSource(
        "test",
        num_identities=data.num_test_identities,
        videos_per_identity=data.videos_per_identity,
        num_frames=num_frames,
        image_size=data.image_size,
        fps=data.fps,
        seed=data.seed,
    )
    if not 0 <= video_id < len(source):
        raise ReenactError(
            f"synthetic:{video_id}: expected a held-out video id in [0, {len(source)})"
        )
    return source


def _synthetic_id(spec: str, flag: str) -> int:
    try:
        return int(spec[len(SYNTHETIC_PREFIX) :])
    except ValueError:
        raise ReenactError(f"{flag}: expected synthetic:<int>, got {spec!r}") from None


def to_unit_range(frames_uint8: np.ndarray) -> np.ndarray:
    return frames_uint8.astype(np.float32) / 127.5 - 1.0


def load_source_image(spec: str, config) -> np.ndarray:
    """The source as float32 `[H, W, 3]` in [-1, 1], checked against the model's frame size."""
    size = config.data.image_size  # in pixels, also for a model that denoises latents
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = _synthetic_id(spec, "--source")
        return to_unit_range(held_out_video(config, video_id, 1).read_frames(video_id, [0])[0])
    if not os.path.isfile(spec):
        raise ReenactError(f"--source {spec}: no such image file")
    try:
        with Image.open(spec) as image:
            rgb = np.asarray(image.convert("RGB"))
    except OSError as e:
        raise ReenactError(f"--source {spec}: not a readable image ({e})") from None
    if rgb.shape[:2] != (size, size):
        raise ReenactError(
            f"--source {spec}: expected a {size}x{size} image (the model's frame size), "
            f"got {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return to_unit_range(rgb)


def load_driving(spec: str, config, frames: int | None, fps: float):
    """Returns `(landmarks_TLC, fps, real_frames_THWC or None)` for the driving signal."""
    num_landmarks = config.model.num_landmarks
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = _synthetic_id(spec, "--driving")
        T = frames or 256
        source = held_out_video(config, video_id, T)
        record = source[video_id]
        real = to_unit_range(source.read_frames(video_id, np.arange(T)))
        return record.landmarks_TLC, record.fps, real
    if not os.path.isfile(spec):
        raise ReenactError(f"--driving {spec}: no such landmark file")
    if spec.endswith(".npy"):
        try:
            landmarks = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ReenactError(f"--driving {spec}: not a readable .npy array ({e})") from None
    else:
        track = load_landmarks(spec)  # raises a one-line ValueError naming the file
        landmarks, fps = track.landmarks_TLC, track.fps
    if landmarks.ndim != 3 or landmarks.shape[1:] != (num_landmarks, 3):
        raise ReenactError(
            f"--driving {spec}: expected landmarks [T, {num_landmarks}, 3] for this model, "
            f"got shape {landmarks.shape}"
        )
    T = frames or landmarks.shape[0]
    if T > landmarks.shape[0]:
        raise ReenactError(
            f"--frames: {T} frames asked for but {spec} has only {landmarks.shape[0]}"
        )
    return landmarks[:T].astype(np.float32), float(fps), None


def render_landmarks(landmarks_TLC: np.ndarray, size: int) -> np.ndarray:
    """Dots at each landmark's (x, y) on black: uint8 `[T, size, size, 3]`."""
    frames = []
    radius = max(1, size // 64)
    for points_LC in landmarks_TLC:
        image = Image.new("RGB", (size, size))
        draw = ImageDraw.Draw(image)
        for x, y in points_LC[:, :2] * size:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(90, 230, 120))
        frames.append(np.asarray(image))
    return np.stack(frames)


def to_display(frames_THWC: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] frames to uint8 at `size` pixels (nearest neighbour keeps the pixels honest)."""
    uint8 = np.clip(np.round((frames_THWC + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.NEAREST)) for f in uint8]
    )


def write_outputs(out, video_THWC, source_HWC, landmarks_TLC, fps, display, real_THWC=None):
    """Writes the video, the side-by-side video and a PNG grid; returns their paths."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    T = video_THWC.shape[0]
    generated = to_display(video_THWC, display)
    write_video(out, generated, fps)
    panels = [
        np.broadcast_to(to_display(source_HWC[None], display), generated.shape),
        render_landmarks(landmarks_TLC, display),
    ]
    if real_THWC is not None:
        panels.append(to_display(real_THWC, display))
    side = np.concatenate(panels + [generated], axis=2)
    stem = os.path.splitext(out)[0]
    side_path = f"{stem}_side_by_side.mp4"
    write_video(side_path, side, fps)
    picks = np.linspace(0, T - 1, min(8, T)).round().astype(int)
    grid_path = f"{stem}_grid.png"
    # One row per picked frame: source | landmarks | (real) | generated.
    Image.fromarray(np.concatenate(list(side[picks]), axis=0)).save(grid_path)
    return out, side_path, grid_path


def progress_bar(total: int, desc: str):
    """A tqdm bar advanced by the sampler's in-loop callback; closed by the caller."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr)
    return bar, lambda index: bar.update(1)


def reenact(
    checkpoint: str,
    driving: str,
    out: str,
    *,
    source: str | None = None,
    frames: int | None = None,
    fps: float = 25.0,
    plan_kind: str = "contiguous",
    settings: SamplerSettings | None = None,
    seed: int = 0,
    display: int = 128,
    devices: int = 0,
    vae: str = "",
    auto_anchor_gap: bool = False,
    loaded=None,
) -> dict:
    """Runs one reenactment end to end; returns the written paths and timings.

    A latent model denoises latents: the source is encoded and the video decoded with the
    autoencoder of `vae` (a diffusers folder), or of the run's `data.vae`.
    auto_anchor_gap: cap the anchor gap at the run's training window (`training_window_s`).
    """
    config, graphdef, params = loaded or load_sdit_for_inference(checkpoint)
    settings = settings or SamplerSettings()
    if auto_anchor_gap:
        settings = dataclasses.replace(settings, max_anchor_gap_s=training_window_s(config))
    codec = frame_codec(config, vae)
    if codec is None:
        raise ReenactError(
            f"--vae: the model denoises {config.model.in_channels}-channel latents; give the "
            "diffusers VAE folder they were encoded with (or set data.vae in the run's config)"
        )
    landmarks_TLC, fps, real_THWC = load_driving(driving, config, frames, fps)
    if source is None:
        if real_THWC is None:
            raise ReenactError("--source: needed unless --driving is a synthetic video")
        source_HWC = real_THWC[0]
    else:
        source_HWC = load_source_image(source, config)
    T = landmarks_TLC.shape[0]
    if T < 2:
        raise ReenactError(f"--frames: expected at least 2 frames, got {T}")
    plan = plan_segments(T, config.data.clip_frames, 0, plan_kind, seed=seed)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    total = plan.num_segments if settings.method == "autoregressive" else settings.num_steps
    bar, tick = progress_bar(total, f"{settings.method} T={T} S={plan.num_segments}")
    source_model = codec.encode(source_HWC)  # the source in the space the model denoises
    start = time.perf_counter()
    try:
        video_THWC, _ = generate_video(
            graphdef, params, schedule,
            prediction=config.diffusion.prediction, plan=plan, landmarks_TLC=landmarks_TLC,
            frame_times_T=np.arange(T) / fps, identity=source_model, source_HWC=source_model,
            settings=settings, key=jax.random.key(seed), progress=tick,
            mesh=sampler_mesh(devices, plan.num_segments),
        )  # fmt: skip
    finally:
        bar.close()
    video_THWC = codec.decode(video_THWC)
    seconds = time.perf_counter() - start
    paths = write_outputs(out, video_THWC, source_HWC, landmarks_TLC, fps, display, real_THWC)
    return dict(paths=paths, seconds=seconds, frames=T, video=video_THWC, real=real_THWC)


def define_flags() -> None:
    """Defines the command-line flags; only when run as a command, so importers can reuse
    this module's functions next to flags of their own."""
    flags.DEFINE_string("checkpoint", None, "Training workdir or exported checkpoint.")
    flags.DEFINE_string("source", None, "Source image file, or synthetic:<held-out id>.")
    flags.DEFINE_string("driving", None, "Landmarks .npz/.npy, or synthetic:<id>.")
    flags.DEFINE_integer("frames", None, "Frames to generate (default: the driving length).")
    flags.DEFINE_float("fps", 25.0, "Frame rate of a .npy landmark array.")
    flags.DEFINE_enum("plan", "contiguous", PLAN_KINDS, "How frames are split into segments.")
    flags.DEFINE_enum(
        "method", "anchored", ["anchored", "independent", "autoregressive"], "Sampler."
    )
    flags.DEFINE_integer("steps", 20, "DDIM steps.")
    flags.DEFINE_string(
        "guidance", "1.0,1.75", "CFG scales: identity,landmarks (landmark CFG sharpens motion)."
    )
    flags.DEFINE_enum(
        "known_anchor_mode", "clean", ["clean", "renoise"], "How the source anchor is held."
    )
    flags.DEFINE_integer("chunk_size", 32, "Segments denoised at once per device (memory bound).")
    flags.DEFINE_integer("devices", 0, "Local devices to split the segments over; 0 = all.")
    flags.DEFINE_string("vae", "", "Latent models: the diffusers VAE folder (default data.vae).")
    flags.DEFINE_float(
        "max_anchor_gap",
        -1.0,
        "Seconds; >0 moves far segments closer to the anchor in time (with a warning); "
        "0 = true times; -1 = the run's training range (video_generation.training_window_s: "
        "the whole training video when anchors come from anywhere in it).",
    )
    flags.DEFINE_integer("seed", 0, "Noise seed; the same seed gives the same video.")
    flags.DEFINE_string("out", "reenact.mp4", "Output mp4 path.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")


def settings_from_flags() -> SamplerSettings:
    FLAGS = flags.FLAGS
    identity_scale, landmark_scale = parse_guidance(FLAGS.guidance)
    return SamplerSettings(
        method=FLAGS.method,
        anchor="known",
        known_anchor_mode=FLAGS.known_anchor_mode,
        num_steps=FLAGS.steps,
        identity_scale=identity_scale,
        landmark_scale=landmark_scale,
        chunk_size=FLAGS.chunk_size,
        max_anchor_gap_s=max(FLAGS.max_anchor_gap, 0.0),
    )


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.checkpoint or not FLAGS.driving:
            raise ReenactError("--checkpoint and --driving are required")
        result = reenact(
            FLAGS.checkpoint, FLAGS.driving, FLAGS.out, source=FLAGS.source,
            frames=FLAGS.frames, fps=FLAGS.fps, plan_kind=FLAGS.plan,
            settings=settings_from_flags(), seed=FLAGS.seed, display=FLAGS.display_size,
            devices=FLAGS.devices, vae=FLAGS.vae, auto_anchor_gap=FLAGS.max_anchor_gap < 0,
        )  # fmt: skip
    except ValueError as e:  # ReenactError, InferenceCheckpointError, landmark-file errors.
        sys.exit(f"error: {e}")
    print(
        f"wrote {', '.join(result['paths'])}: {result['frames']} frames in "
        f"{result['seconds']:.1f} s ({result['frames'] / result['seconds']:.1f} frames/s)"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
