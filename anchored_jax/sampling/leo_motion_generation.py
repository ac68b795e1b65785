"""Motion-code generation with the LMDM: first-frame-conditioned, unconditional, and chained.

All samplers run `anchored_jax.sampling.denoise_loop.sample` over offsets `m_BLM` and hold
step 0 at m = 0 as a known clean frame (alpha at step 0 *is* alpha_1), then return codes
`alpha = m + alpha_1`. Classifier-free guidance mixes the conditional and null-condition
outputs. LEO's infinite-length chaining (`chain_motion`) conditions each chunk on the last code
of the previous one, so a T-frame sequence costs ceil((T - 1) / (L - 1)) chunks in one scan.
`delta_statistics` and `motion_norm_statistics` are the numbers the LMDM is judged by.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.models.leo_lmdm import codes_from_offsets
from anchored_jax.sampling.denoise_loop import sample


def make_denoise_fn(graphdef, params, alpha1_BM, *, guidance_scale=1.0, unconditional=False):
    """`(m_t_BLM, t_BL, gap_B=None) -> out` of the denoiser; CFG with `guidance_scale` != 1.

    `gap_B`: frames from alpha_1 to each window's step 1 (None: 1, consecutive)."""
    model = nnx.merge(graphdef, params)
    b = alpha1_BM.shape[0]

    def denoise(m_t_BLM, t_BL, gap_B=None):
        null_B = jnp.ones((b,), bool)
        if unconditional:
            return model(m_t_BLM, t_BL, alpha1_BM, gap_B=gap_B, drop_condition_B=null_B)
        cond = model(m_t_BLM, t_BL, alpha1_BM, gap_B=gap_B)
        if guidance_scale == 1.0:
            return cond
        null = model(m_t_BLM, t_BL, alpha1_BM, gap_B=gap_B, drop_condition_B=null_B)
        return null + guidance_scale * (cond - null)

    return denoise


def sample_offsets(
    graphdef,
    params,
    schedule: Schedule,
    alpha1_BM: jax.Array,
    key: jax.Array,
    *,
    length: int,
    num_steps: int,
    prediction: str,
    guidance_scale: float = 1.0,
    unconditional: bool = False,
) -> jax.Array:
    """Offsets `m_BLM` (m at step 0 exactly 0) for each first code in `alpha1_BM`."""
    b, m = alpha1_BM.shape
    noise_BLM = jax.random.normal(key, (b, length, m), jnp.float32)
    known_mask_BL = jnp.zeros((b, length), bool).at[:, 0].set(True)
    denoise = make_denoise_fn(
        graphdef, params, alpha1_BM, guidance_scale=guidance_scale, unconditional=unconditional
    )
    return sample(
        denoise,
        schedule,
        noise_BLM,
        num_steps=num_steps,
        prediction=prediction,
        sampler="ddim",
        clip_x0=False,  # offsets are not images in [-1, 1]
        known_x0=jnp.zeros_like(noise_BLM),
        known_mask=known_mask_BL,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "graphdef",
        "length",
        "num_steps",
        "prediction",
        "guidance_scale",
        "unconditional",
    ),
)
def sample_motion(
    graphdef,
    params,
    schedule,
    alpha1_BM,
    key,
    *,
    length,
    num_steps,
    prediction,
    guidance_scale=1.0,
    unconditional=False,
):
    """Codes `alpha_BLM = m + alpha_1` from first codes (first-frame-conditioned sampling).

    With `unconditional=True` the offsets are drawn with the learned null condition (the
    model never sees alpha_1) and then placed at `alpha1_BM`.
    """
    m_BLM = sample_offsets(
        graphdef,
        params,
        schedule,
        alpha1_BM,
        key,
        length=length,
        num_steps=num_steps,
        prediction=prediction,
        guidance_scale=guidance_scale,
        unconditional=unconditional,
    )
    return codes_from_offsets(m_BLM, alpha1_BM)


@functools.partial(
    jax.jit,
    static_argnames=(
        "graphdef", "num_frames", "length", "num_steps", "prediction", "guidance_scale"
    ),
)  # fmt: skip
def chain_motion(
    graphdef, params, schedule, alpha1_BM, key, *, num_frames, length, num_steps, prediction,
    guidance_scale=1.0,
):  # fmt: skip
    """LEO chaining: `[B, num_frames, M]` codes, each chunk starting at the previous last code."""
    new_per_chunk = length - 1
    num_chunks = -(-(num_frames - 1) // new_per_chunk)

    def chunk(alpha_start_BM, chunk_key):
        codes_BLM = sample_motion(
            graphdef,
            params,
            schedule,
            alpha_start_BM,
            chunk_key,
            length=length,
            num_steps=num_steps,
            prediction=prediction,
            guidance_scale=guidance_scale,
        )
        return codes_BLM[:, -1], codes_BLM[:, 1:]

    _, new_CBLM = jax.lax.scan(chunk, alpha1_BM, jax.random.split(key, num_chunks))
    new_BTM = jnp.moveaxis(new_CBLM, 0, 1).reshape(alpha1_BM.shape[0], -1, alpha1_BM.shape[1])
    return jnp.concatenate([alpha1_BM[:, None], new_BTM], axis=1)[:, :num_frames]


def delta_statistics(alpha_BTM) -> dict[str, float]:
    """Mean and std of |alpha_{t+1} - alpha_t| over every step, magnitude and sequence."""
    delta = np.abs(np.diff(np.asarray(alpha_BTM, np.float64), axis=1))
    return {"delta_mean": float(delta.mean()), "delta_std": float(delta.std())}


def motion_norm_statistics(alpha_BTM, num_windows: int = 8) -> dict[str, list[float]]:
    """Per time window: mean and max of ||alpha_t|| and of ||alpha_t - alpha_1|| (drift)."""
    alpha = np.asarray(alpha_BTM, np.float64)
    norm_BT = np.linalg.norm(alpha, axis=-1)
    drift_BT = np.linalg.norm(alpha - alpha[:, :1], axis=-1)
    windows = np.array_split(np.arange(alpha.shape[1]), min(num_windows, alpha.shape[1]))
    return {
        "window_start": [int(w[0]) for w in windows],
        "norm_mean": [float(norm_BT[:, w].mean()) for w in windows],
        "norm_max": [float(norm_BT[:, w].max()) for w in windows],
        "drift_mean": [float(drift_BT[:, w].mean()) for w in windows],
        "drift_max": [float(drift_BT[:, w].max()) for w in windows],
    }
