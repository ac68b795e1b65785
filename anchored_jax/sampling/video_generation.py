"""A whole video from a trained sDiT: plan -> gather conditions -> one jitted sampler -> scatter.

`generate_video` is what the reenact, edit, evaluate and benchmark commands call. It gathers
each segment slot's time (relative to its slot 0) and landmarks from the plan, runs the method
of `settings` as one compiled XLA computation, and scatters the owned slots back into a
`[T, H, W, C]` video. Compiled samplers are cached per (graph, settings, mesh, shapes), so
editing runs that reuse the same noise and anchor with new conditions do not recompile.

With a mesh (`parallel.mesh.sampler_mesh`), the anchored and independent methods split the
segments over its devices and replicate the parameters; the autoregressive baseline is
sequential over segments by definition and runs on one device.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.parallel.mesh import sampler_mesh  # noqa: F401 (launchers import it here)
from anchored_jax.sampling.anchored_sampler import (
    ProgressRelay,
    autoregressive_segments,
    denoise_segments,
    shared_anchor_noise,
)
from anchored_jax.sampling.sampler_settings import (  # noqa: F401 (training_window_s: launchers)
    SamplerSettings,
    training_window_s,
)
from anchored_jax.sampling.sdit_denoiser import make_sdit_denoiser
from anchored_jax.sampling.segment_plan import SegmentPlan


@dataclasses.dataclass(frozen=True, eq=False)
class SegmentInputs:
    """What the sampler needs per segment slot, gathered from a plan (numpy)."""

    times_SK: np.ndarray  # float32 seconds relative to the segment's slot 0
    landmarks_SKLC: np.ndarray
    frame_mask_SK: np.ndarray
    segment_valid_S: np.ndarray
    last_slot_S: np.ndarray  # int32: the segment's last owned slot (autoregressive hand-over)


def autoregressive_frame_index(plan: SegmentPlan) -> np.ndarray:
    """The plan's indices with slot 0 of segment s replaced by segment s-1's last frame."""
    if plan.kind != "contiguous":
        raise ValueError(
            f"sampling.plan: the autoregressive baseline needs 'contiguous', got {plan.kind!r}"
        )
    index_SK = plan.frame_index_SK.copy()
    last_slot_S = _last_owned_slot(plan)
    for s in range(1, plan.num_segments):
        index_SK[s, 0] = index_SK[s - 1, last_slot_S[s - 1]]
    return index_SK


def _last_owned_slot(plan: SegmentPlan) -> np.ndarray:
    K = plan.frames_per_segment
    slots_SK = np.where(plan.owned_SK, np.arange(K)[None], 0)
    return slots_SK.max(axis=1).astype(np.int32)


def gather_segment_inputs(
    plan: SegmentPlan,
    landmarks_TLC: np.ndarray,
    frame_times_T: np.ndarray,
    *,
    autoregressive: bool = False,
    max_anchor_gap_s: float = 0.0,
) -> SegmentInputs:
    """Per-slot times and landmarks of a plan; times are relative to each segment's slot 0."""
    landmarks_TLC = np.asarray(landmarks_TLC, np.float32)
    frame_times_T = np.asarray(frame_times_T, np.float64)
    if landmarks_TLC.shape[0] != plan.num_frames or frame_times_T.shape != (plan.num_frames,):
        raise ValueError(
            f"driving: the plan has {plan.num_frames} frames but got landmarks "
            f"{landmarks_TLC.shape} and times {frame_times_T.shape}"
        )
    index_SK = autoregressive_frame_index(plan) if autoregressive else plan.frame_index_SK
    times_SK = frame_times_T[index_SK] - frame_times_T[index_SK[:, :1]]
    if max_anchor_gap_s > 0:
        moved = int((np.abs(times_SK[:, 1:]) > max_anchor_gap_s + 1e-9).any(axis=1).sum())
        if moved:
            # Never silently: the model is then told times that are not the frames' own.
            logging.warning(
                "sampling.max_anchor_gap_s: %d of %d segments reach further than %.2f s from "
                "their anchor; their times are moved closer (0 = true times)",
                moved, len(times_SK), max_anchor_gap_s,
            )  # fmt: skip
        times_SK = compress_anchor_gaps(times_SK, max_anchor_gap_s)
    return SegmentInputs(
        times_SK=times_SK.astype(np.float32),
        landmarks_SKLC=landmarks_TLC[index_SK],
        frame_mask_SK=plan.frame_mask_SK,
        segment_valid_S=plan.segment_valid_S,
        last_slot_S=_last_owned_slot(plan),
    )


def compress_anchor_gaps(times_SK: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Moves each segment's frames (slots 1..K-1) towards slot 0 until the furthest is at most
    `max_gap_s` away, keeping their own spacing and never closer than their smallest gap.

    The model is trained on clips spanning at most `data.max_window` frames; frames of a long
    video sit much further from the anchor than that. This keeps the times it is given in the
    range it was trained on (a sampling choice, `SamplerSettings.max_anchor_gap_s`).
    """
    out = times_SK.astype(np.float64).copy()
    frames = out[:, 1:]
    reach = np.abs(frames).max(axis=1)
    nearest = np.abs(frames).min(axis=1)
    gaps = np.abs(np.diff(np.concatenate([out[:, :1], frames], axis=1), axis=1))
    positive = gaps[gaps > 0]
    min_gap = positive.min() if positive.size else 0.0
    shift = np.clip(reach - max_gap_s, 0.0, np.maximum(nearest - min_gap, 0.0))
    direction = np.sign(frames[:, :1] if frames.size else 0.0)
    out[:, 1:] = frames - direction * shift[:, None]
    return out


@functools.lru_cache(maxsize=32)
def compiled_video_sampler(
    graphdef: nnx.GraphDef,
    settings: SamplerSettings,
    prediction: str,
    mixed_identity: bool,
    mesh: Mesh | None = None,
):
    """One jitted `(params, schedule, inputs, key, identity, source, mix) -> x0_SKHWC`."""
    relay = ProgressRelay()

    def run(params, schedule, noise_SKHWC, cond_S, valid_S, last_slot_S, key, identity, source,
            mix):  # fmt: skip
        model = nnx.merge(graphdef, params)
        denoise_fn = make_sdit_denoiser(
            model, identity, settings, identity_mix=mix if mixed_identity else None
        )
        kw = dict(settings=settings, prediction=prediction, progress_fn=relay)
        if settings.method == "autoregressive":
            return autoregressive_segments(
                denoise_fn, schedule, noise_SKHWC, cond_S, last_slot_S, key,
                source_HWC=source, **kw,
            )  # fmt: skip
        settled = (settings.method, settings.anchor, settings.generated_anchor_mode) == (
            "anchored",
            "generated",
            "settled",
        )
        if settled:
            source = settle_anchor(denoise_fn, schedule, noise_SKHWC, cond_S, valid_S, key,
                                   settings=settings, prediction=prediction)  # fmt: skip
            kw["settings"] = dataclasses.replace(settings, anchor="known")
        return denoise_segments(
            denoise_fn, schedule, noise_SKHWC, cond_S, valid_S, key, source_HWC=source,
            mesh=mesh, **kw,
        )  # fmt: skip

    return jax.jit(run), relay


# Segments, spread over the video, whose average makes a settled generated anchor.
SETTLE_SEGMENTS = 16


def settle_anchor(denoise_fn, schedule, noise_SKHWC, cond_S, valid_S, key, *, settings,
                  prediction):  # fmt: skip
    """The generated anchor of `generated_anchor_mode="settled"`, `[H, W, C]`.

    The anchored sampler runs on up to `SETTLE_SEGMENTS` segments spread evenly over the
    video (a fraction of the full run's cost, and the same whatever the chunk size) and their
    averaged anchor is the result. The full run then holds it clean, so every segment copies
    appearance from one finished frame instead of one that is still forming.
    """
    S = noise_SKHWC.shape[0]
    picked = np.unique(np.linspace(0, S - 1, min(S, SETTLE_SEGMENTS)).round().astype(int))
    take = functools.partial(jax.tree.map, lambda x: x[picked])
    x0_SKHWC = denoise_segments(
        denoise_fn, schedule, take(noise_SKHWC), take(cond_S), take(valid_S),
        jax.random.fold_in(key, 1), settings=settings, prediction=prediction,
    )  # fmt: skip
    return x0_SKHWC[0, 0]


def sampler_call(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    schedule: Schedule,
    *,
    prediction: str,
    plan: SegmentPlan,
    landmarks_TLC: np.ndarray,
    frame_times_T: np.ndarray,
    identity: np.ndarray,
    settings: SamplerSettings,
    key: jax.Array,
    source_HWC: np.ndarray | None = None,
    identity_mix: tuple[np.ndarray, float] | None = None,
    mesh: Mesh | None = None,
    window: int = 0,
):
    """The compiled sampler, its progress relay and its arguments (see `generate_video`)."""
    if settings.anchor == "known" and settings.method != "independent" and source_HWC is None:
        raise ValueError("sampling.anchor: a known anchor needs a source image")
    ar = settings.method == "autoregressive"
    inputs = gather_segment_inputs(
        plan, landmarks_TLC, frame_times_T, autoregressive=ar,
        max_anchor_gap_s=settings.max_anchor_gap_s,
    )  # fmt: skip
    S, K = plan.frame_index_SK.shape
    frame_shape = tuple(np.shape(source_HWC if source_HWC is not None else identity))
    noise_key, loop_key = jax.random.split(key)
    if window:
        loop_key = jax.random.fold_in(loop_key, window)
    # The same key gives the same noise for every method and edit: edits differ only in the
    # conditions. A shared anchor starts from one draw; the independent baseline's segments
    # each draw their own slot 0, as separately sampled clips would.
    noise_SKHWC = shared_anchor_noise(
        noise_key, (S, K) + frame_shape, shared=settings.method != "independent",
        correlation=settings.noise_correlation, window=window,
    )  # fmt: skip
    cond_S = dict(
        times_SK=jnp.asarray(inputs.times_SK),
        landmarks_SKLC=jnp.asarray(inputs.landmarks_SKLC),
        frame_mask_SK=jnp.asarray(inputs.frame_mask_SK),
    )
    if settings.method == "autoregressive":
        mesh = None
    if mesh is not None:
        # Every device runs the whole model on its own segments.
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    sampler, relay = compiled_video_sampler(
        graphdef, settings.traced(), prediction, identity_mix is not None, mesh
    )
    source = source_HWC if source_HWC is not None else np.zeros(frame_shape)
    mix = None
    if identity_mix is not None:
        mix = (jnp.asarray(identity_mix[0], jnp.float32), jnp.float32(identity_mix[1]))
    args = (
        params, schedule, noise_SKHWC, cond_S, jnp.asarray(inputs.segment_valid_S),
        jnp.asarray(inputs.last_slot_S), loop_key, jnp.asarray(identity, jnp.float32),
        jnp.asarray(source, jnp.float32), mix,
    )  # fmt: skip
    return sampler, relay, args


def generate_video(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    schedule: Schedule,
    *,
    settings: SamplerSettings,
    plan: SegmentPlan,
    source_HWC: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    **inputs,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates the plan's T frames; returns `(video_THWC, segments_SKHWC)` in [-1, 1].

    Keyword inputs: `prediction`, `landmarks_TLC` `[T, L, 3]`, `frame_times_T` (seconds),
    `identity` (the identity condition: a source image `[H, W, C]` or an embedding vector),
    `key`, optionally `identity_mix=(identity_b, w)` to condition on the interpolated
    identity embedding, `mesh` (see `sampler_mesh`) to split the segments over devices, and
    `window` (see `shared_anchor_noise`) when the plan is one window of a longer video.
    source_HWC: the known anchor frame (required for a known anchor and `autoregressive`);
      it becomes output frame `plan.anchor`.
    progress: called with each finished step (or, for `autoregressive`, segment) index.
    """
    sampler, relay, args = sampler_call(
        graphdef, params, schedule, settings=settings, plan=plan, source_HWC=source_HWC, **inputs
    )
    relay.callback = progress
    try:
        segments_SKHWC = np.asarray(jax.device_get(sampler(*args)))
    finally:
        relay.callback = None
    if settings.method == "anchored" and settings.anchor == "generated":
        anchor_value = segments_SKHWC[0, 0]
    elif settings.method == "independent" and source_HWC is None:
        anchor_value = segments_SKHWC[0, 0]  # no source: segment 0's own anchor frame
    else:
        anchor_value = np.asarray(source_HWC, np.float32)
    return plan.scatter(segments_SKHWC, anchor_value), segments_SKHWC
