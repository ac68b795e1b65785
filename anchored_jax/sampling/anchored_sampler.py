"""The anchored sampler: S segments that share one anchor frame, denoised in one XLA loop.

`denoise_segments` is a pure function meant to sit inside `jax.jit`. The shared stepper
(`diffusion.reverse_step.reverse_scan`) walks the solver's timesteps; each step is three
parts, each in its own module:

- the chunk step (`segment_chunks.denoise_chunks`): a `lax.scan` over chunks of
  `chunk_size` segments, so the model runs on a bounded batch however long the video is;
- the anchor update (`anchor_update`): slot 0 held as the known source (clean or re-noised),
  averaged across segments (a shared generated anchor), or left alone (`independent`);
- the `shard_map` wrapper (`_on_mesh`): on a mesh, segments are split over the devices, each
  runs the same step loop over its own chunks, and the anchor mean becomes a `psum`, so the
  only cross-device traffic is one `[H, W, C]` all-reduce per step.

All randomness comes from one key: the initial noise is drawn by the caller, and step i draws
segment s's noise from `fold_in(split(key, num_steps)[i], s)`, so the output depends neither
on the chunk size nor on how segments are split over devices (up to float rounding of
different batch shapes). `autoregressive_segments` runs the baseline that conditions segment
s on the last frame of segment s-1: a `lax.scan` over segments around the same step loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from anchored_jax.diffusion.reverse_step import Solver, hold_known_times, reverse_scan
from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.sampling.anchor_update import (
    AnchorRule,
    known_anchor_at,
    set_anchor,
    step_noise,
    update_anchor,
)
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_chunks import (  # noqa: F401 (chunk_layout: callers)
    SegmentDenoiseFn,
    chunk_layout,
    denoise_chunks,
    from_chunks,
    pad_segments,
    to_chunks,
)

# progress_fn(step_index) is called from inside the loop (through a host callback).
ProgressFn = Callable[[int], None]


@dataclasses.dataclass
class ProgressRelay:
    """The `progress_fn` a compiled sampler is built with: the jitted function is cached and
    reused, so the caller's own callback is set on the relay per call, never traced."""

    callback: ProgressFn | None = None

    def __call__(self, index: int) -> None:
        if self.callback is not None:
            self.callback(index)


def solver_of(settings: SamplerSettings, prediction: str) -> Solver:
    """The reverse-chain solver a sampler setting asks for."""
    return Solver(prediction, settings.num_steps, settings.sampler, settings.eta, settings.clip_x0)


def _segment_loop(
    denoise_fn: SegmentDenoiseFn,
    schedule: Schedule,
    solver: Solver,
    rule: AnchorRule,
    n_chunks: int,
    axes: tuple[str, ...],
    progress_fn: ProgressFn | None,
    x_SKHWC: jax.Array,
    cond_S: Any,
    weight_S: jax.Array,
    ids_S: jax.Array,
    source_HWC: jax.Array | None,
    anchor_eps_HWC: jax.Array | None,
    step_keys: jax.Array,
) -> jax.Array:
    """The step loop over one device's segments (all of them without a mesh)."""
    K = x_SKHWC.shape[1]
    per_chunk = x_SKHWC.shape[0] // n_chunks
    cond_NC = to_chunks(cond_S, n_chunks)
    shard = jax.lax.axis_index(axes) if axes else 0
    slot0_K = jnp.arange(K) == 0

    def anchor_at(t):
        return known_anchor_at(rule, schedule, source_HWC, anchor_eps_HWC, t)

    def step(x_SKHWC, index, t, t_prev, step_key):
        t_K = jnp.full((K,), t, jnp.int32)
        t_prev_K = jnp.full((K,), t_prev, jnp.int32)
        if rule.held_clean:
            t_K, t_prev_K = hold_known_times(t_K, t_prev_K, slot0_K)
        if rule.known:
            x_SKHWC = set_anchor(x_SKHWC, anchor_at(t))
        t_CK = jnp.broadcast_to(t_K, (per_chunk, K))
        t_prev_CK = jnp.broadcast_to(t_prev_K, (per_chunk, K))
        noise_NC = None
        if solver.needs_noise:
            noise_NC = to_chunks(step_noise(rule, step_key, ids_S, x_SKHWC.shape), n_chunks)
        x_prev_NC = denoise_chunks(
            denoise_fn, solver, schedule, to_chunks(x_SKHWC, n_chunks), cond_NC, t_CK,
            t_prev_CK, noise_NC,
        )  # fmt: skip
        x_prev_SKHWC = update_anchor(
            rule, from_chunks(x_prev_NC), anchor_at(t_prev) if rule.known else None,
            weight_S, axes,
        )  # fmt: skip
        if progress_fn is not None:
            # Every shard runs this loop; only the first reports.
            jax.debug.callback(
                lambda i, d: progress_fn(int(i)) if int(d) == 0 else None, index, shard
            )
        return x_prev_SKHWC

    return reverse_scan(step, x_SKHWC, schedule, solver.num_steps, step_keys)


def _on_mesh(local_loop: Callable, mesh: Mesh | None, *sharded: Any) -> jax.Array:
    """Runs `local_loop(*sharded)` on the segments split over every axis of `mesh`.

    Whatever `local_loop` closes over is replicated; without a mesh it runs as it is.
    """
    if mesh is None:
        return local_loop(*sharded)
    spec = PartitionSpec(tuple(mesh.axis_names))
    specs = tuple(spec for _ in sharded)
    return jax.shard_map(local_loop, mesh=mesh, in_specs=specs, out_specs=spec)(*sharded)


def denoise_segments(
    denoise_fn: SegmentDenoiseFn,
    schedule: Schedule,
    noise_SKHWC: jax.Array,
    cond_S: Any,
    segment_valid_S: jax.Array,
    key: jax.Array,
    *,
    settings: SamplerSettings,
    prediction: str,
    source_HWC: jax.Array | None = None,
    progress_fn: ProgressFn | None = None,
    mesh: Mesh | None = None,
) -> jax.Array:
    """Denoises S anchored segments; returns x0 `[S, K, H, W, C]` (slot 0 = the anchor).

    Args:
      denoise_fn: the (guided) model on a chunk of segments.
      noise_SKHWC: the starting noise. For a shared generated anchor, slot 0 should hold the
        same noise in every segment (`shared_anchor_noise` does this).
      cond_S: per-segment conditioning (times, landmarks, frame mask, ...), leading axis S.
      segment_valid_S: bool, segments that own output frames; only they vote in the anchor
        mean (padding segments would otherwise pull it).
      key: randomness of DDPM / DDIM eta>0 and of the re-noised known anchor.
      settings: static; `settings.method` must be `anchored` or `independent` here.
      source_HWC: the known anchor (needed when `settings.anchor == "known"`).
      progress_fn: optional host callback with the finished step's index.
      mesh: optional device mesh. Segments are then split over all of its axes (each device
        runs its own chunks, `chunk_size` segments at a time) and the anchor mean is a
        cross-device `psum`; whatever `denoise_fn` closes over is replicated. The result
        equals the single-device one up to the order of the anchor sum's float additions.
    """
    if settings.method == "autoregressive":
        raise ValueError("sampling.method: use autoregressive_segments for 'autoregressive'")
    rule = AnchorRule.from_settings(settings)
    if rule.known and source_HWC is None:
        raise ValueError("sampling.anchor: a known anchor needs source_HWC")
    solver = solver_of(settings, prediction)
    S = noise_SKHWC.shape[0]
    shards = 1 if mesh is None else mesh.size
    n_chunks, per_chunk = chunk_layout(-(-S // shards), settings.chunk_size)
    padded = shards * n_chunks * per_chunk

    x_SKHWC = pad_segments(noise_SKHWC.astype(jnp.float32), padded)
    cond_S = pad_segments(cond_S, padded)
    valid_S = jnp.zeros((padded,), bool).at[:S].set(jnp.asarray(segment_valid_S, bool))
    # Anchor-mean weights, normalised over every device's segments before the split.
    weight_S = valid_S.astype(jnp.float32) / jnp.maximum(jnp.sum(valid_S), 1)
    # Global segment ids seed the per-segment noise, so any split draws the same numbers.
    ids_S = jnp.arange(padded, dtype=jnp.uint32)
    anchor_key, loop_key = jax.random.split(key)
    anchor_eps_HWC = None
    if rule.known:
        source_HWC = jnp.asarray(source_HWC, jnp.float32)
        anchor_eps_HWC = jax.random.normal(anchor_key, source_HWC.shape, jnp.float32)
    step_keys = jax.random.split(loop_key, settings.num_steps)
    axes = () if mesh is None else tuple(mesh.axis_names)

    def local_loop(x_SKHWC, cond_S, weight_S, ids_S):
        return _segment_loop(
            denoise_fn, schedule, solver, rule, n_chunks, axes, progress_fn, x_SKHWC, cond_S,
            weight_S, ids_S, source_HWC, anchor_eps_HWC, step_keys,
        )  # fmt: skip

    x0_SKHWC = _on_mesh(local_loop, mesh, x_SKHWC, cond_S, weight_S, ids_S)
    return x0_SKHWC[:S]


def shared_anchor_noise(
    key: jax.Array,
    shape_SKHWC: tuple[int, ...],
    *,
    shared: bool = True,
    correlation: float = 0.0,
    window: int = 0,
) -> jax.Array:
    """Starting noise with one draw for the anchor slot, repeated in every segment.

    `shared=False` keeps each segment's own slot-0 draw (the independent baseline); the other
    slots are the same numbers either way, so methods differ only in how they treat slot 0.
    `correlation` c mixes a common draw into every slot: sqrt(c) * common + sqrt(1 - c) * own,
    still unit variance per element; common to the whole video, or per segment if not shared.
    `window` > 0 names a later window of a video sampled a window of segments at a time: its
    frames draw their own noise, while the anchor and the common draw stay the video's.
    """
    k_frames, k_anchor, k_common = jax.random.split(key, 3)
    if window:
        k_frames = jax.random.fold_in(k_frames, window)
    noise = jax.random.normal(k_frames, shape_SKHWC, jnp.float32)
    if shared:
        anchor = jax.random.normal(k_anchor, shape_SKHWC[2:], jnp.float32)
        noise = noise.at[:, 0].set(jnp.broadcast_to(anchor, noise[:, 0].shape))
    if correlation > 0.0:
        # One common draw for the whole video, or one per segment when segments are
        # independent (the baseline must not share anything between segments).
        common_shape = shape_SKHWC[2:] if shared else shape_SKHWC[:1] + (1,) + shape_SKHWC[2:]
        common = jax.random.normal(k_common, common_shape, jnp.float32)
        noise = jnp.sqrt(correlation) * common + jnp.sqrt(1.0 - correlation) * noise
    return noise


def autoregressive_segments(
    denoise_fn: SegmentDenoiseFn,
    schedule: Schedule,
    noise_SKHWC: jax.Array,
    cond_S: Any,
    last_slot_S: jax.Array,
    key: jax.Array,
    *,
    settings: SamplerSettings,
    prediction: str,
    source_HWC: jax.Array,
    progress_fn: ProgressFn | None = None,
) -> jax.Array:
    """The autoregressive baseline: segment s is conditioned on segment s-1's last frame.

    Segments run one after another (a `lax.scan`); each goes through the known-anchor path of
    `denoise_segments` with its slot 0 set to the previous segment's frame at `last_slot_S`
    (the source for s=0). `cond_S` must already give slot 0 that frame's time and landmarks.
    """
    one_segment = dataclasses.replace(settings, method="anchored", anchor="known", chunk_size=1)
    S = noise_SKHWC.shape[0]

    def segment(previous_HWC, per_segment):
        s, noise_KHWC, cond, last_slot = per_segment
        cond_1 = jax.tree.map(lambda x: x[None], cond)
        x0_1KHWC = denoise_segments(
            denoise_fn, schedule, noise_KHWC[None], cond_1, jnp.ones((1,), bool),
            jax.random.fold_in(key, s), settings=one_segment, prediction=prediction,
            source_HWC=previous_HWC,
        )  # fmt: skip
        x0_KHWC = x0_1KHWC[0]
        if progress_fn is not None:
            jax.debug.callback(lambda i: progress_fn(int(i)), s)
        return x0_KHWC[last_slot], x0_KHWC

    _, x0_SKHWC = jax.lax.scan(
        segment,
        jnp.asarray(source_HWC, jnp.float32),
        (jnp.arange(S), noise_SKHWC.astype(jnp.float32), cond_S, jnp.asarray(last_slot_S)),
    )
    return x0_SKHWC
