"""Reenactment: a source image animated with a driving landmark track by a trained sDiT.

    model = load_sdit("runs/sdit_tiny")
    settings = sampler_settings(model.config, num_steps=10)
    video_THWC = reenact(model, source_HWC, landmarks_TLC, fps=25.0, settings=settings)

The source is the known anchor and output frame 0; frame t is driven by landmarks t. A latent
model's frames go through its autoencoder (`frame_codec`): the source is encoded, the video
decoded.

`stream_reenactment` yields the video in time order, one window of segments at a time, so a
caller that writes each window as it comes holds one window in memory whatever the video's
length. Segments that share a clean known anchor do not interact (the anchor is held, not
averaged), so a window is exactly the sampler run on its own segments; a video of at most one
window is the single batched run, bit for bit. Each later window draws its frames' own
starting noise afresh, but keeps the video's common noise component (`noise_correlation`), so
windows do not change the look of the video at their boundaries. Methods whose segments do
interact (a generated anchor, the autoregressive chain) and plans whose segments interleave in
time (strided, random) run as one batch, whose memory grows with the length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.interop.diffusers_vae import load_run_vae
from anchored_jax.pipelines.checkpoints import LoadedModel
from anchored_jax.sampling.frame_codec import FrameCodec, frame_codec
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import SegmentPlan, plan_segments
from anchored_jax.sampling.video_generation import generate_video, sampler_mesh

# A streaming window holds this many chunks of segments (`settings.chunk_size` each, per
# device): large enough that the default lengths run as one batch, small enough that a window
# of the tiny model is tens of MB.
WINDOW_CHUNKS = 8


def sampler_settings(config, **overrides) -> SamplerSettings:
    """The run's sampler settings (its `sampling` section) with the given overrides; an
    override of None keeps the run's value, and "auto" values resolve for this run."""
    return SamplerSettings.from_config(config, **overrides)


def model_codec(config, vae: str = "") -> FrameCodec:
    """Pixels <-> the frames the model denoises; a latent model needs its autoencoder
    (`vae`, a diffusers folder, else the run's `data.vae`)."""
    codec = frame_codec(config, load_run_vae(config, vae))
    if codec is None:
        raise ValueError(
            f"--vae: the model denoises {config.model.in_channels}-channel latents; give the "
            "diffusers VAE folder they were encoded with (or set data.vae in the run's config)"
        )
    return codec


def streams_in_windows(plan: SegmentPlan, settings: SamplerSettings) -> bool:
    """Whether the plan's segments can be sampled a window at a time with the same result."""
    independent_segments = settings.method == "independent" or (
        settings.method == "anchored" and settings.anchor == "known"
    )
    return plan.kind == "contiguous" and plan.anchor == 0 and independent_segments


def window_plan(plan: SegmentPlan, first: int, stop: int, num_segments: int):
    """Segments `[first, stop)` of a contiguous plan as a plan of their own frames.

    Returns `(sub_plan, frames)`: `frames` are the global indices of the sub-plan's frames
    (the anchor, then the window's frames in time order). The sub-plan is padded with empty
    segments to `num_segments`, so every window compiles to one shape.
    """
    index_SK = plan.frame_index_SK[first:stop]
    owned_SK = plan.owned_SK[first:stop]
    lo, hi = int(index_SK[owned_SK].min()), int(index_SK[owned_SK].max()) + 1
    frames = np.concatenate([[plan.anchor], np.arange(lo, hi)])
    local_SK = np.where(index_SK == plan.anchor, 0, index_SK - lo + 1).astype(np.int32)
    pad = num_segments - len(local_SK)
    if pad:
        local_SK = np.concatenate([local_SK, np.zeros((pad, local_SK.shape[1]), np.int32)])
        owned_SK = np.concatenate([owned_SK, np.zeros((pad, owned_SK.shape[1]), bool)])
    sub = SegmentPlan(len(frames), 0, plan.kind, local_SK, owned_SK)
    return sub, frames


def window_bounds(plan: SegmentPlan, settings: SamplerSettings, window_segments: int):
    """`[(first, stop), ...]` segment ranges of the streaming windows (one: a single batch)."""
    S = plan.num_segments
    if not streams_in_windows(plan, settings) or S <= window_segments:
        return [(0, S)]
    return [(s, min(s + window_segments, S)) for s in range(0, S, window_segments)]


def stream_reenactment(
    model: LoadedModel,
    source_HWC: np.ndarray,
    landmarks_TLC: np.ndarray,
    *,
    fps: float,
    settings: SamplerSettings,
    plan_kind: str | None = None,
    seed: int = 0,
    devices: int = 0,
    codec: FrameCodec | None = None,
    window_segments: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yields the reenacted video `[n, H, W, 3]` in [-1, 1], window after window, in time
    order; together the windows are the T frames of `landmarks_TLC`.

    plan_kind: how frames are split into segments; None = `settings.plan`.
    window_segments: segments per window; 0 = `WINDOW_CHUNKS` chunks per device.
    progress: called once per finished solver step (or autoregressive segment) of each window.
    """
    config, graphdef, params = model
    T = len(landmarks_TLC)
    if T < 2:
        raise ValueError(f"--frames: expected at least 2 frames, got {T}")
    codec = codec or model_codec(config)
    plan = plan_segments(T, config.data.clip_frames, 0, plan_kind or settings.plan, seed=seed)
    mesh = sampler_mesh(devices, plan.num_segments)
    per_window = window_segments or settings.chunk_size * WINDOW_CHUNKS * (
        1 if mesh is None else mesh.size
    )
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    source_model = codec.encode(source_HWC)  # the source in the space the model denoises
    times_T = np.arange(T) / fps
    key = jax.random.key(seed)
    bounds = window_bounds(plan, settings, per_window)
    for w, (first, stop) in enumerate(bounds):
        if len(bounds) == 1:
            sub, frames = plan, np.arange(T)
        else:
            sub, frames = window_plan(plan, first, stop, per_window)
        video_THWC, _ = generate_video(
            graphdef, params, schedule,
            prediction=config.diffusion.prediction, plan=sub,
            landmarks_TLC=landmarks_TLC[frames], frame_times_T=times_T[frames],
            identity=source_model, source_HWC=source_model, settings=settings,
            key=key, window=w, progress=progress,
            mesh=sampler_mesh(devices, sub.num_segments),
        )  # fmt: skip
        # Every window repeats the anchor as its frame 0; only the first one emits it.
        yield codec.decode(video_THWC if w == 0 else video_THWC[1:])


def num_windows(model: LoadedModel, num_frames: int, settings: SamplerSettings, *,
                plan_kind: str | None = None, devices: int = 0,
                window_segments: int = 0) -> int:  # fmt: skip
    """How many windows `stream_reenactment` runs (for a progress bar's total)."""
    plan = plan_segments(num_frames, model[0].data.clip_frames, 0, plan_kind or settings.plan)
    mesh = sampler_mesh(devices, plan.num_segments)
    per_window = window_segments or settings.chunk_size * WINDOW_CHUNKS * (
        1 if mesh is None else mesh.size
    )
    return len(window_bounds(plan, settings, per_window))


def reenact(model: LoadedModel, source_HWC: np.ndarray, landmarks_TLC: np.ndarray,
            **kwargs) -> np.ndarray:  # fmt: skip
    """The whole reenacted video `[T, H, W, 3]` in [-1, 1] (see `stream_reenactment`)."""
    return np.concatenate(list(stream_reenactment(model, source_HWC, landmarks_TLC, **kwargs)))
