"""Segments in fixed-size chunks, and one solver step over all of them, a chunk at a time.

The anchored sampler denoises S segments `chunk_size` at a time so the model's batch (its
memory) is bounded however long the video is. Segments are padded to N*C (edge padding keeps
padded inputs in-distribution; they never vote in the anchor mean nor reach the output) and
reshaped to `[N, C, ...]`; `denoise_chunks` runs one solver step over the N chunks in a
`lax.scan`, so the model is traced once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from anchored_jax.diffusion.reverse_step import Solver
from anchored_jax.diffusion.schedules import Schedule

# denoise_fn(x_CKHWC, t_CK, cond_C) -> model output shaped like x (epsilon, v or x0); cond_C
# is any pytree whose leaves have the chunk's segments as their leading axis.
SegmentDenoiseFn = Callable[[jax.Array, jax.Array, Any], jax.Array]


def chunk_layout(num_segments: int, chunk_size: int) -> tuple[int, int]:
    """(number of chunks N, segments per chunk C) with N*C >= S and the least padding."""
    n_chunks = -(-num_segments // min(chunk_size, num_segments))
    per_chunk = -(-num_segments // n_chunks)
    return n_chunks, per_chunk


def pad_segments(tree: Any, padded: int) -> Any:
    """Pads every leaf's leading (segment) axis to `padded` by repeating its last segment."""

    def pad(x):
        extra = padded - x.shape[0]
        if extra == 0:
            return x
        # Edge padding keeps the padded segments' inputs finite and in-distribution.
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def to_chunks(tree: Any, n_chunks: int) -> Any:
    """`[N*C, ...]` leaves -> `[N, C, ...]`."""
    return jax.tree.map(lambda x: x.reshape((n_chunks, -1) + x.shape[1:]), tree)


def from_chunks(x_NC: jax.Array) -> jax.Array:
    """`[N, C, ...]` -> `[N*C, ...]`."""
    return x_NC.reshape((-1,) + x_NC.shape[2:])


def denoise_chunks(
    denoise_fn: SegmentDenoiseFn,
    solver: Solver,
    schedule: Schedule,
    x_NCKHWC: jax.Array,
    cond_NC: Any,
    t_CK: jax.Array,
    t_prev_CK: jax.Array,
    noise_NC: jax.Array | None,
) -> jax.Array:
    """One solver step of every chunk; the model sees one chunk of C segments at a time."""

    def chunk_step(_, chunk):
        x_CKHWC, cond_C, noise_C = chunk
        out = denoise_fn(x_CKHWC, t_CK, cond_C).astype(jnp.float32)
        return None, solver.step(schedule, x_CKHWC, t_CK, t_prev_CK, out, noise_C)

    _, x_prev_NCKHWC = jax.lax.scan(chunk_step, None, (x_NCKHWC, cond_NC, noise_NC))
    return x_prev_NCKHWC
