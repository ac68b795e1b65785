"""LEO's pipelines: animate a source with a driving video's motion; generate motion and render it.

    animator = load_model("runs/animator_tiny", "animator")
    fns = animator_fns(animator)
    codes_TM = encode_codes(fns, driving_THWC)                       # the driving motion
    video_THWC = render_codes(fns, source_HWC, codes_TM, mode="relative")

    lmdm = load_model("runs/lmdm_tiny", "lmdm")
    codes_1TM = generate_codes(lmdm, alpha1_1M, method="anchored", num_frames=1024)

`render_codes` renders in batches and `stream_render_codes` yields each batch as it is made,
so a caller that writes them holds one batch of frames, whatever the video's length.

Modes: `relative` renders z_s + Q(alpha_d(t) - alpha_d(0) + alpha_s) (the driving motion
relative to its first frame, on top of the source's own pose); `absolute` renders
z_s + Q alpha_d(t) (the driving frame's pose itself). Generation is LEO's chaining (`chain`:
each chunk of L codes starts at the previous chunk's last code) or the anchored LMDM
(`anchored`: segments that all hold alpha_1 as their step 0, denoised as one batch).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.pipelines.checkpoints import LoadedModel
from anchored_jax.sampling.leo_anchored_motion import anchored_motion, join_statistics, motion_plan
from anchored_jax.sampling.leo_motion_generation import chain_motion, motion_norm_statistics
from anchored_jax.sampling.leo_motion_statistics import long_motion_report
from anchored_jax.sampling.video_generation import sampler_mesh

MODES = ("relative", "absolute")
METHODS = ("chain", "anchored")


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, params, frames_BHWC):
    return nnx.merge(graphdef, params).encode(frames_BHWC)


@functools.partial(jax.jit, static_argnums=0)
def _render(graphdef, params, z_1D, feats, alpha_BM, alpha_start_M, alpha_source_M):
    gen = nnx.merge(graphdef, params)
    b = alpha_BM.shape[0]
    tile = lambda x: jnp.broadcast_to(x, (b,) + x.shape[1:])  # noqa: E731
    relative = dict(
        alpha_start_BM=jnp.broadcast_to(alpha_start_M, alpha_BM.shape),
        alpha_source_BM=jnp.broadcast_to(alpha_source_M, alpha_BM.shape),
    )
    return gen.render(tile(z_1D), jax.tree.map(tile, feats), alpha_BM, **relative)


def animator_fns(animator: LoadedModel):
    """`encode(frames_BHWC) -> (z, feats, alpha)` and
    `render(z_1D, feats, alpha_BM, alpha_start_M, alpha_source_M) -> frames` (relative form;
    zero start and source codes give absolute frames). Compiled once per graph and shape."""
    _, graphdef, params = animator
    return (
        functools.partial(_encode, graphdef, params),
        functools.partial(_render, graphdef, params),
    )


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size: expected an int >= 1, got {batch_size!r}")


def _padded(batch, batch_size):
    pad = batch_size - batch.shape[0]  # one compiled shape for every batch
    return jnp.concatenate([batch, jnp.repeat(batch[-1:], pad, 0)]) if pad else batch


def stream_render_codes(fns, source_HWC, codes_TM, *, mode: str,
                        batch_size: int = 16) -> Iterator[np.ndarray]:  # fmt: skip
    """Yields frames `[n, H, W, 3]` of the source moved by codes, one batch at a time."""
    if mode not in MODES:
        raise ValueError(f"--mode: expected one of {list(MODES)}, got {mode!r}")
    check_batch_size(batch_size)
    encode, render = fns
    z_1D, feats, alpha_s = encode(jnp.asarray(source_HWC, jnp.float32)[None])
    codes_TM = jnp.asarray(codes_TM, jnp.float32)
    if mode == "relative":
        start, source = codes_TM[0], alpha_s[0]
    else:  # alpha - 0 + 0: the codes themselves
        start = source = jnp.zeros_like(codes_TM[0])
    for i in range(0, codes_TM.shape[0], batch_size):
        batch = codes_TM[i : i + batch_size]
        frames = render(z_1D, feats, _padded(batch, batch_size), start, source)
        yield np.asarray(frames)[: batch.shape[0]]


def render_codes(fns, source_HWC, codes_TM, *, mode: str, batch_size: int = 16,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:  # fmt: skip
    """Frames `[T, H, W, 3]` of the source moved by codes (relative to codes[0] or absolute)."""
    out = []
    for frames in stream_render_codes(fns, source_HWC, codes_TM, mode=mode, batch_size=batch_size):
        out.append(frames)
        if progress is not None:
            progress(len(frames))
    return np.concatenate(out)


def encode_codes(fns, frames_THWC, batch_size: int = 16) -> np.ndarray:
    """Motion codes alpha `[T, M]` of frames, by the animator's encoder."""
    check_batch_size(batch_size)
    encode = fns[0]
    out = []
    for i in range(0, frames_THWC.shape[0], batch_size):
        batch = jnp.asarray(frames_THWC[i : i + batch_size])
        out.append(np.asarray(encode(_padded(batch, batch_size))[2])[: batch.shape[0]])
    return np.concatenate(out)


def first_codes(fns, frames_BHWC) -> np.ndarray:
    """alpha_1 `[B, M]`: the motion codes of first frames, what the LMDM starts from."""
    return np.asarray(fns[0](jnp.asarray(frames_BHWC, jnp.float32))[2])


def check_pair(animator: LoadedModel, lmdm: LoadedModel) -> None:
    """The LMDM must generate codes of the animator's motion dimension."""
    got, want = lmdm[0].model.motion_dim, animator[0].model.motion_dim
    if got != want:
        raise ValueError(
            f"--lmdm: its model.motion_dim ({got}) differs from the animator's ({want})"
        )


def generate_codes(lmdm: LoadedModel, alpha1_BM, *, method: str, num_frames: int, seed=0,
                   steps=0, guidance=None, chunk_size=32, devices=0,
                   progress=None) -> np.ndarray:  # fmt: skip
    """`[B, num_frames, M]` codes from first codes by `chain` or `anchored` generation.

    steps: solver steps; 0 = the LMDM's `diffusion.sample_steps`.
    guidance: classifier-free guidance scale; None = the LMDM's `diffusion.guidance_scale`
      (1, no guidance, for runs saved before it existed).
    """
    if guidance is not None and not 0.0 <= guidance <= 10.0:
        raise ValueError(f"--guidance: expected a scale in [0, 10], got {guidance}")
    if method not in METHODS:
        raise ValueError(f"--method: expected one of {list(METHODS)}, got {method!r}")
    if num_frames < 2:
        raise ValueError(f"--frames: expected at least 2, got {num_frames}")
    config, graphdef, params = lmdm
    diffusion = config.diffusion
    schedule = make_schedule(diffusion.schedule, diffusion.num_timesteps)
    common = dict(
        num_frames=num_frames, length=config.model.length, prediction=diffusion.prediction,
        num_steps=steps or diffusion.sample_steps,
        guidance_scale=diffusion.get("guidance_scale", 1.0) if guidance is None else guidance,
    )  # fmt: skip
    key = jax.random.key(seed)
    alpha1_BM = np.asarray(alpha1_BM, np.float32)
    if method == "chain":
        return np.asarray(chain_motion(graphdef, params, schedule, alpha1_BM, key, **common))
    segments = motion_plan(num_frames, config.model.length).num_segments * len(alpha1_BM)
    return np.asarray(
        anchored_motion(
            graphdef,
            params,
            schedule,
            alpha1_BM,
            key,
            chunk_size=chunk_size,
            mesh=sampler_mesh(devices, segments),
            progress=progress,
            **common,
        )  # fmt: skip
    )


def animate(
    animator: LoadedModel,
    source_HWC,
    *,
    driving_THWC=None,
    codes_TM=None,
    mode: str = "relative",
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """`(video_THWC, codes_TM)`: the source moved by a driving video's (or given) codes."""
    if (driving_THWC is None) == (codes_TM is None):
        raise ValueError("--driving: expected driving frames or motion codes, exactly one")
    fns = animator_fns(animator)
    if codes_TM is None:
        codes_TM = encode_codes(fns, driving_THWC, batch_size)
    video = render_codes(fns, source_HWC, codes_TM, mode=mode, batch_size=batch_size)
    return video, np.asarray(codes_TM)


def compare_methods(lmdm: LoadedModel, real_NTM, *, num_frames: int, sequences: int, seed=0,
                    steps=0, guidance=None) -> tuple[dict, dict]:  # fmt: skip
    """Both methods from the first codes of `sequences` real code sequences `[N, T, M]`.

    Returns `(results, codes)`: per method its time, finiteness, norm and join statistics,
    and, when the real sequences are `num_frames` long or longer, `results["vs_real"]`
    (`long_motion_report`: step, drift, join and saw-tooth statistics with relative errors);
    `codes` holds each method's `[sequences, num_frames, M]` codes and the real ones they
    are compared with (key `"real"`, when long enough).
    """
    real_NTM = np.asarray(real_NTM, np.float32)
    if not 1 <= sequences <= len(real_NTM):
        raise ValueError(
            f"--sequences: expected 1..{len(real_NTM)} (held-out videos), got {sequences}"
        )
    config = lmdm[0]
    first_BM = real_NTM[:sequences, 0]
    results, codes = {}, {}
    for method in METHODS:
        start = time.perf_counter()
        codes[method] = generate_codes(
            lmdm, first_BM, method=method, num_frames=num_frames, seed=seed, steps=steps,
            guidance=guidance,
        )  # fmt: skip
        results[method] = dict(
            seconds=time.perf_counter() - start,
            finite=bool(np.isfinite(codes[method]).all()),
            **motion_norm_statistics(codes[method]),
            **join_statistics(codes[method], config.model.length),
        )
    results["real_norm_mean"] = float(np.linalg.norm(real_NTM, axis=-1).mean())
    if real_NTM.shape[1] >= num_frames:  # held-out videos as long: real statistics too
        real_BTM = real_NTM[:sequences, :num_frames]
        results["vs_real"] = long_motion_report(real_BTM, codes, config.model.length)
        codes = {"real": real_BTM, **codes}
    return results, codes
