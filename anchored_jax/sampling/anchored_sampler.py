"""The anchored sampler: S segments that share one anchor frame, denoised in one XLA loop.

`denoise_segments` is a pure function meant to sit inside `jax.jit`. One `lax.scan` walks the
solver's timesteps; inside each step a second `lax.scan` walks chunks of `chunk_size`
segments, so the model runs on a bounded batch however long the video is, while every chunk
sees the same anchor value. After each step the anchor slot (slot 0) is rewritten:

- generated anchor, shared (`anchored`): the mean of its new value over the valid segments,
  written back to every segment, so the anchor follows one trajectory and its final value is
  the same array in every segment (bit-identical). With DDPM or DDIM eta > 0 every segment's
  anchor slot gets the same step noise, so the mean is the mean of the predicted means plus
  one noise draw of the step's full variance;
- known anchor, `clean`: the source image itself, fed at per-frame t=0 on every step;
- known anchor, `renoise`: the source re-noised to the step's t with one fixed noise draw
  (the anchor's own deterministic DDIM path), ending exactly on the source;
- `independent`: left alone, so each segment generates its own slot 0 (no sharing, and no
  source frame in the segments; the source still conditions the identity).

All randomness comes from one key: the initial noise is drawn by the caller, and step i draws
segment s's noise from `fold_in(split(key, num_steps)[i], s)`, so the output depends neither
on the chunk size nor on how segments are split over devices (up to float rounding of
different batch shapes).

On a mesh (`mesh=`), the segments are split over the devices with `shard_map`: each device
runs the same step loop over its own chunks and the anchor mean becomes a `psum`, so the
only cross-device traffic is one `[H, W, C]` all-reduce per step. `autoregressive_segments`
runs the baseline that conditions segment s on the last frame of segment s-1: a `lax.scan`
over segments around the same step loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from anchored_jax.diffusion.samplers import ddim_step, ddpm_step, timestep_spacing
from anchored_jax.diffusion.schedules import Schedule, q_sample
from anchored_jax.sampling.sampler_settings import SamplerSettings

# denoise_fn(x_CKHWC, t_CK, cond_C) -> model output shaped like x (epsilon, v or x0); cond_C
# is any pytree whose leaves have the chunk's segments as their leading axis.
SegmentDenoiseFn = Callable[[jax.Array, jax.Array, Any], jax.Array]
# progress_fn(step_index) is called from inside the loop (through a host callback).
ProgressFn = Callable[[int], None]
# fold_in id of a step's shared-anchor noise draw, above any segment id.
SHARED_ANCHOR_ID = 2**32 - 1


@dataclasses.dataclass
class ProgressRelay:
    """The `progress_fn` a compiled sampler is built with: the jitted function is cached and
    reused, so the caller's own callback is set on the relay per call, never traced."""

    callback: ProgressFn | None = None

    def __call__(self, index: int) -> None:
        if self.callback is not None:
            self.callback(index)


def chunk_layout(num_segments: int, chunk_size: int) -> tuple[int, int]:
    """(number of chunks N, segments per chunk C) with N*C >= S and the least padding."""
    n_chunks = -(-num_segments // min(chunk_size, num_segments))
    per_chunk = -(-num_segments // n_chunks)
    return n_chunks, per_chunk


def _pad_segments(tree: Any, padded: int) -> Any:
    def pad(x):
        extra = padded - x.shape[0]
        if extra == 0:
            return x
        # Edge padding keeps the padded segments' inputs finite and in-distribution.
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _to_chunks(tree: Any, n_chunks: int) -> Any:
    return jax.tree.map(lambda x: x.reshape((n_chunks, -1) + x.shape[1:]), tree)


def _from_chunks(x: jax.Array) -> jax.Array:
    return x.reshape((-1,) + x.shape[2:])


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
    share = settings.method == "anchored"
    # `independent` has no shared anchor of any kind: every segment generates its own slot 0.
    known = share and settings.anchor == "known"
    if known and source_HWC is None:
        raise ValueError("sampling.anchor: a known anchor needs source_HWC")
    S, K = noise_SKHWC.shape[:2]
    renoise = known and settings.known_anchor_mode == "renoise"
    shards = 1 if mesh is None else mesh.size
    n_chunks, per_chunk = chunk_layout(-(-S // shards), settings.chunk_size)
    padded = shards * n_chunks * per_chunk

    x_SKHWC = _pad_segments(noise_SKHWC.astype(jnp.float32), padded)
    cond_S = _pad_segments(cond_S, padded)
    valid_S = jnp.zeros((padded,), bool).at[:S].set(jnp.asarray(segment_valid_S, bool))
    # Anchor-mean weights, normalised over every device's segments before the split.
    weight_S = valid_S.astype(jnp.float32) / jnp.maximum(jnp.sum(valid_S), 1)
    # Global segment ids seed the per-segment noise, so any split draws the same numbers.
    ids_S = jnp.arange(padded, dtype=jnp.uint32)
    slot0_K = jnp.arange(K) == 0
    needs_noise = settings.sampler == "ddpm" or settings.eta != 0.0
    anchor_key, loop_key = jax.random.split(key)
    if known:
        source_HWC = jnp.asarray(source_HWC, jnp.float32)
        anchor_eps_HWC = jax.random.normal(anchor_key, source_HWC.shape, jnp.float32)
    axes = () if mesh is None else tuple(mesh.axis_names)

    def known_anchor_at(t: jax.Array) -> jax.Array:
        if not renoise:
            return source_HWC
        noisy = q_sample(schedule, source_HWC, jnp.maximum(t, 0), anchor_eps_HWC)
        return jnp.where(t < 0, source_HWC, noisy)

    def set_anchor(x_SKHWC: jax.Array, anchor_HWC: jax.Array) -> jax.Array:
        return x_SKHWC.at[:, 0].set(jnp.broadcast_to(anchor_HWC, x_SKHWC[:, 0].shape))

    t_steps = timestep_spacing(schedule.num_timesteps, settings.num_steps)
    t_prev_steps = jnp.concatenate([t_steps[1:], jnp.full((1,), -1, jnp.int32)])
    step_keys = jax.random.split(loop_key, settings.num_steps)

    def local_loop(x_SKHWC, cond_S, weight_S, ids_S):
        """The step loop over this device's segments (all of them without a mesh)."""
        cond_NC = _to_chunks(cond_S, n_chunks)
        shard = jax.lax.axis_index(axes) if axes else 0

        def segment_noise(step_key):
            def draw(i):
                return jax.random.normal(jax.random.fold_in(step_key, i), x_SKHWC.shape[1:])

            noise_SKHWC = jax.vmap(draw)(ids_S)
            if share:
                # One draw for the shared anchor slot: the mean over segments then keeps its
                # full variance (the mean of S independent draws would shrink it by sqrt(S)).
                anchor_HWC = jax.random.normal(
                    jax.random.fold_in(step_key, SHARED_ANCHOR_ID), x_SKHWC.shape[2:]
                )
                noise_SKHWC = noise_SKHWC.at[:, 0].set(anchor_HWC)
            return _to_chunks(noise_SKHWC, n_chunks)

        def step(x_SKHWC, per_step):
            index, t, t_prev, step_key = per_step
            t_K = jnp.full((K,), t, jnp.int32)
            t_prev_K = jnp.full((K,), t_prev, jnp.int32)
            if known and not renoise:
                # The clean source is context: t=0 in, and its own step lands on x0 (t_prev=-1).
                t_K = jnp.where(slot0_K, 0, t_K)
                t_prev_K = jnp.where(slot0_K, -1, t_prev_K)
            if known:
                x_SKHWC = set_anchor(x_SKHWC, known_anchor_at(t))
            t_CK = jnp.broadcast_to(t_K, (per_chunk, K))
            t_prev_CK = jnp.broadcast_to(t_prev_K, (per_chunk, K))
            noise_NC = segment_noise(step_key) if needs_noise else None

            def chunk_step(_, chunk):
                x_CKHWC, cond_C, noise_C = chunk
                out = denoise_fn(x_CKHWC, t_CK, cond_C).astype(jnp.float32)
                if settings.sampler == "ddim":
                    x_prev = ddim_step(
                        prediction, schedule, x_CKHWC, t_CK, t_prev_CK, out,
                        settings.eta, noise_C, settings.clip_x0,
                    )  # fmt: skip
                else:
                    x_prev = ddpm_step(
                        prediction, schedule, x_CKHWC, t_CK, out, noise_C, t_prev_CK,
                        settings.clip_x0,
                    )  # fmt: skip
                return None, x_prev

            _, x_prev_NC = jax.lax.scan(
                chunk_step, None, (_to_chunks(x_SKHWC, n_chunks), cond_NC, noise_NC)
            )
            x_prev_SKHWC = _from_chunks(x_prev_NC)
            if known:
                x_prev_SKHWC = set_anchor(x_prev_SKHWC, known_anchor_at(t_prev))
            elif share:
                anchor_HWC = jnp.tensordot(weight_S, x_prev_SKHWC[:, 0], axes=1)
                if axes:
                    anchor_HWC = jax.lax.psum(anchor_HWC, axes)  # the same sum on every device
                x_prev_SKHWC = set_anchor(x_prev_SKHWC, anchor_HWC)
            if progress_fn is not None:
                # Every shard runs this loop; only the first reports.
                jax.debug.callback(
                    lambda i, d: progress_fn(int(i)) if int(d) == 0 else None, index, shard
                )
            return x_prev_SKHWC, None

        indices = jnp.arange(settings.num_steps)
        x0_SKHWC, _ = jax.lax.scan(step, x_SKHWC, (indices, t_steps, t_prev_steps, step_keys))
        return x0_SKHWC

    if mesh is None:
        x0_SKHWC = local_loop(x_SKHWC, cond_S, weight_S, ids_S)
    else:
        spec = PartitionSpec(axes)
        x0_SKHWC = jax.shard_map(
            local_loop, mesh=mesh, in_specs=(spec, spec, spec, spec), out_specs=spec
        )(x_SKHWC, cond_S, weight_S, ids_S)
    return x0_SKHWC[:S]


def shared_anchor_noise(
    key: jax.Array,
    shape_SKHWC: tuple[int, ...],
    *,
    shared: bool = True,
    correlation: float = 0.0,
) -> jax.Array:
    """Starting noise with one draw for the anchor slot, repeated in every segment.

    `shared=False` keeps each segment's own slot-0 draw (the independent baseline); the other
    slots are the same numbers either way, so methods differ only in how they treat slot 0.
    `correlation` c mixes a common draw into every slot: sqrt(c) * common + sqrt(1 - c) * own,
    still unit variance per element; common to the whole video, or per segment if not shared.
    """
    k_frames, k_anchor, k_common = jax.random.split(key, 3)
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
