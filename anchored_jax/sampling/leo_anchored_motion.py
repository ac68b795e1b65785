"""The anchored LMDM: long motion-code sequences as segments that share one anchor code.

A T-step sequence of motion codes is split like an anchored video (`plan_segments`,
contiguous plan, K = the LMDM's length L): slot 0 of every segment is the anchor code and
slots 1..L-1 hold L-1 of the other T-1 steps. All segments of all sequences are denoised in
one batched loop by the anchored sampler (`denoise_segments`), which hands its denoiser
`[C, L, M]` offsets instead of `[C, K, H, W, C]` frames; nothing else changes.

What the anchor and the step positions mean here:

- The LMDM denoises offsets m = alpha - alpha_1 with step 0 held at m = 0 and alpha_1 fed to
  every step (the LMC). In offset space the anchor is therefore always *known*: it is m = 0 in
  every segment, held clean at per-step t = 0 (the sampler's `known` / `clean` path), which is
  exactly how training and `sample_offsets` show step 0. A *generated* anchor has no meaning
  for this model (step 0 is never denoised in training), so it is not offered.
- The LMDM has no frame times: its positions 0..L-1 are fixed sinusoids learned from
  consecutive codes. We read position i as "i steps after a step whose code is the anchor"
  in every segment, wherever the segment's steps lie in the output. Each segment is thus a
  first-frame-conditioned sample that starts from the anchor's pose, and the output is the
  segments' steps in time order. The norm cannot drift (every step is at most L-1 model
  steps from alpha_1), but at each segment join the motion restarts from near the anchor:
  joins are not continuous (`join_statistics` measures this), unlike LEO's chain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.models.leo_lmdm import codes_from_offsets
from anchored_jax.sampling.anchored_sampler import ProgressRelay, denoise_segments
from anchored_jax.sampling.leo_motion_generation import make_denoise_fn
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import SegmentPlan, plan_segments


def motion_plan(num_frames: int, length: int) -> SegmentPlan:
    """The contiguous anchored plan of `num_frames` steps in segments of the LMDM's length."""
    return plan_segments(num_frames, length, anchor=0, kind="contiguous")


def motion_settings(num_steps: int, chunk_size: int = 32) -> SamplerSettings:
    """DDIM with the anchor (m = 0) held clean; no x0 clipping (codes are not pixels)."""
    return SamplerSettings(
        method="anchored",
        anchor="known",
        known_anchor_mode="clean",
        sampler="ddim",
        num_steps=num_steps,
        chunk_size=chunk_size,
        clip_x0=False,
    )


@functools.lru_cache(maxsize=16)
def _compiled(graphdef, num_frames, length, settings, prediction, guidance, unconditional, mesh):
    plan = motion_plan(num_frames, length)
    frames_index = plan.frame_index_SK[plan.owned_SK]  # output step of each owned slot
    relay = ProgressRelay()

    def run(params, schedule, alpha1_BM, key):
        b, m = alpha1_BM.shape
        s = plan.num_segments

        def denoise(m_t_CLM, t_CL, alpha1_CM):
            fn = make_denoise_fn(
                graphdef, params, alpha1_CM, guidance_scale=guidance, unconditional=unconditional
            )
            return fn(m_t_CLM, t_CL)

        # Drawn as [B, S, L, M] from `key` itself: with one segment this is the very noise
        # `sample_motion` draws from the same key, so the two agree.
        noise_BSLM = jax.random.normal(key, (b, s, length, m), jnp.float32)
        alpha1_GM = jnp.repeat(alpha1_BM, s, axis=0)  # G = B * S segments, sequence-major
        m_GLM = denoise_segments(
            denoise, schedule, noise_BSLM.reshape(b * s, length, m), alpha1_GM,
            jnp.ones((b * s,), bool), jax.random.fold_in(key, 1), settings=settings,
            prediction=prediction, source_HWC=jnp.zeros((m,), jnp.float32),
            progress_fn=relay, mesh=mesh,
        )  # fmt: skip
        codes_BSLM = codes_from_offsets(m_GLM, alpha1_GM).reshape(b, s, length, m)
        out_BTM = jnp.zeros((b, num_frames, m), jnp.float32).at[:, 0].set(alpha1_BM)
        return out_BTM.at[:, frames_index].set(codes_BSLM[:, plan.owned_SK])

    return jax.jit(run), relay


def anchored_motion(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    schedule: Schedule,
    alpha1_BM: jax.Array,
    key: jax.Array,
    *,
    num_frames: int,
    length: int,
    num_steps: int,
    prediction: str,
    chunk_size: int = 32,
    guidance_scale: float = 1.0,
    unconditional: bool = False,
    mesh: Mesh | None = None,
    progress: Callable[[int], None] | None = None,
) -> jax.Array:
    """`[B, num_frames, M]` codes: step 0 is alpha_1, the rest come from anchored segments.

    All ceil((T - 1) / (L - 1)) segments of every sequence go through one compiled loop,
    `chunk_size` segments per model call; `mesh` splits them over devices. `progress` is
    called with each finished solver step. Guidance and `unconditional` are as in
    `sample_motion`.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
    settings = motion_settings(num_steps, chunk_size)
    run, relay = _compiled(
        graphdef, num_frames, length, settings, prediction, float(guidance_scale),
        bool(unconditional), mesh,
    )  # fmt: skip
    args = (params, schedule, jnp.asarray(alpha1_BM, jnp.float32), key)
    if mesh is not None:
        # Every device runs the whole model on its own segments.
        args = jax.device_put(args, NamedSharding(mesh, PartitionSpec()))
    relay.callback = progress
    try:
        return run(*args)
    finally:
        relay.callback = None


def join_statistics(alpha_BTM, length: int) -> dict[str, float]:
    """Mean |alpha_{t+1} - alpha_t| (per magnitude) at segment joins and within segments.

    A join is the step from the last step of one L-1-step block to the first of the next
    (steps t = k(L-1) -> k(L-1)+1, k >= 1): where anchored segments meet, and where LEO's
    chain starts each new chunk.
    """
    delta_BTM = np.abs(np.diff(np.asarray(alpha_BTM, np.float64), axis=1))
    step = np.arange(delta_BTM.shape[1])  # delta index t is the move from step t to t+1
    is_join = (step > 0) & (step % (length - 1) == 0)
    return {
        "join_delta_mean": float(delta_BTM[:, is_join].mean()) if is_join.any() else 0.0,
        "within_delta_mean": float(delta_BTM[:, ~is_join].mean()),
    }
