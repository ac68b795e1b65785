"""The anchored LMDM: a long motion-code sequence denoised as overlapping windows that all
condition on the one anchor code alpha_1, in one batched loop.

Why the earlier design restarted at every join, and what replaces it:

- It gave the LMDM no frame times, so every segment read its steps as 1..L-1 frames after
  alpha_1, wherever they lay in the video: each segment was a fresh first-frame sample and
  the motion snapped back towards alpha_1 at every join (|delta alpha| 9x the within-segment
  step). Now each window carries its gap after the anchor (`gap_B`, frames), and the model
  is trained on windows at any gap from their conditioning code (data_pipelines/
  motion_codes.py, `build_anchored_window_dataset`), so steps 300..314 come out with the
  spread from alpha_1 that 300 frames have.
- Time alone would leave neighbouring windows independent given alpha_1: each would be a
  plausible 15-frame stretch, but not the continuation of the one before. So the windows
  overlap, and the state lives on the timeline, one value per frame: at every solver step
  each window predicts x0 of its frames, the predictions of a frame are averaged over the
  windows that hold it, and the DDIM update runs on the timeline. The default blend,
  `nearest`, takes each frame's x0 from the one window it sits most centrally in (weight 1,
  else 0): windows still see each other's frames as context in the overlap, but disagreeing
  predictions are never averaged, which pulled the motion towards its mean (`triangular`
  weights, falling to the window edges: |delta alpha| -10% against real codes, `nearest`
  -5%; docs/leo.md). Overlapping windows thus
  agree on their shared frames the way the sDiT's segments agree on their shared anchor
  (co-denoising of overlapping windows as in MultiDiffusion, Bar-Tal et al. 2023).

The anchor is always known: in offset space m = alpha - alpha_1 it is m = 0 at time 0, held
clean at t = 0 in every window, exactly as in training. Frame 0 of the output is alpha_1.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchored_jax.diffusion.objectives import predict_x0_and_eps
from anchored_jax.diffusion.schedules import Schedule
from anchored_jax.sampling.anchored_sampler import ProgressRelay
from anchored_jax.sampling.denoise_loop import sample
from anchored_jax.sampling.leo_motion_generation import make_denoise_fn

DEFAULT_OVERLAP = 7  # frames shared by neighbouring windows of L-1 = 15 (stride 8)
BLENDS = ("triangular", "nearest")


@dataclasses.dataclass(frozen=True)
class MotionWindows:
    """Windows of `width` consecutive output steps (step 0, alpha_1, is in none of them)."""

    starts: tuple[int, ...]  # first output step of each window
    width: int  # steps per window (L - 1, or T - 1 for a short sequence)

    @property
    def num_segments(self) -> int:
        return len(self.starts)

    def index_SW(self) -> np.ndarray:
        return np.asarray(self.starts)[:, None] + np.arange(self.width)[None]

    def weight_W(self) -> np.ndarray:
        """Triangular weights (1 at the ends, peak mid-window): a frame is taken mostly from
        the window that sees context on both of its sides."""
        k = np.arange(self.width)
        return np.minimum(k + 1, self.width - k).astype(np.float32)

    def weight_SW(self, blend: str) -> np.ndarray:
        """Per window and slot: `triangular` weights, or `nearest` (1 for the one window in
        which the frame sits most centrally, 0 elsewhere)."""
        if blend not in BLENDS:
            raise ValueError(f"blend: expected one of {list(BLENDS)}, got {blend!r}")
        index_SW = self.index_SW()
        weight_SW = np.broadcast_to(self.weight_W(), index_SW.shape).astype(np.float32)
        if blend == "triangular":
            return weight_SW
        best_T = np.zeros(index_SW.max() + 1, np.float32)
        np.maximum.at(best_T, index_SW, weight_SW)
        owner_SW = weight_SW == best_T[index_SW]
        # Ties (two windows equally central) go to the earlier window only.
        first = np.zeros_like(best_T, bool)
        out = np.zeros_like(weight_SW)
        for s in range(len(index_SW)):
            take = owner_SW[s] & ~first[index_SW[s]]
            out[s, take] = 1.0
            first[index_SW[s][take]] = True
        return out


def motion_plan(num_frames: int, length: int, overlap: int = DEFAULT_OVERLAP) -> MotionWindows:
    """Windows of L-1 steps covering steps 1..T-1, each `overlap` steps into the next."""
    if num_frames < 2:
        raise ValueError(f"num_frames: expected >= 2, got {num_frames}")
    width = min(length - 1, num_frames - 1)
    if not 0 <= overlap < width:
        overlap = min(max(overlap, 0), width - 1)
    stride = width - overlap
    last = num_frames - width  # the last window ends at step T - 1
    starts = list(range(1, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return MotionWindows(tuple(starts), width)


@functools.lru_cache(maxsize=16)
def _compiled(graphdef, plan, settings, mesh):
    num_steps, prediction, guidance, unconditional, chunk_size, eta, blend = settings
    index_SW = plan.index_SW()
    s, w = index_SW.shape
    weight_SW = plan.weight_SW(blend)
    count_T = np.zeros(index_SW.max() + 1, np.float32)
    np.add.at(count_T, index_SW, weight_SW)
    count_T[0] = 1.0  # step 0 is alpha_1 itself, in no window
    gap_S = np.asarray(plan.starts, np.float32)  # window s starts starts[s] steps after alpha_1
    relay = ProgressRelay()

    def run(params, schedule, alpha1_BM, key):
        b, m = alpha1_BM.shape
        g = b * s  # windows of every sequence, sequence-major
        chunk = min(chunk_size, g)
        padded = -(-g // chunk) * chunk
        alpha1_GM = jnp.repeat(alpha1_BM, s, axis=0)
        gap_G = jnp.tile(jnp.asarray(gap_S), b)

        def pad(x):
            return jnp.concatenate([x, jnp.repeat(x[-1:], padded - g, 0)]) if padded > g else x

        def model_x0(m_t_GLM, t_GL):
            def one_chunk(args):
                m_t, t, gap, alpha1 = args
                denoise = make_denoise_fn(
                    graphdef, params, alpha1, guidance_scale=guidance, unconditional=unconditional
                )
                out = denoise(m_t, t, gap_B=gap)
                return predict_x0_and_eps(prediction, schedule, m_t, t, out)[0]

            args = tuple(pad(x) for x in (m_t_GLM, t_GL, gap_G, alpha1_GM))
            if mesh is not None:
                spec = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
                args = jax.lax.with_sharding_constraint(args, spec)
            args = jax.tree.map(lambda x: x.reshape(padded // chunk, chunk, *x.shape[1:]), args)
            x0 = jax.lax.map(one_chunk, args)
            return x0.reshape(padded, *x0.shape[2:])[:g]

        def denoise_timeline(x_BTM, t_BT):
            # Every window: the anchor (m = 0, clean) then its frames of the timeline.
            m_t_BSWM = x_BTM[:, index_SW]
            m_t_GLM = jnp.concatenate(
                [jnp.zeros((b, s, 1, m), x_BTM.dtype), m_t_BSWM], axis=2
            ).reshape(g, w + 1, m)
            t_GL = jnp.concatenate(
                [jnp.zeros((b, s, 1), jnp.int32), t_BT[:, index_SW]], axis=2
            ).reshape(g, w + 1)
            x0_BSWM = model_x0(m_t_GLM, t_GL)[:, 1:].reshape(b, s, w, m)
            weighted = x0_BSWM * jnp.asarray(weight_SW)[None, :, :, None]
            sum_BTM = jnp.zeros_like(x_BTM).at[:, index_SW].add(weighted)
            # Host progress tick with the step's diffusion time (one call per solver step).
            jax.debug.callback(lambda t: relay(int(t)), t_BT[0, -1])
            return sum_BTM / jnp.asarray(count_T)[None, :, None]

        num_frames = len(count_T)
        noise_BTM = jax.random.normal(key, (b, num_frames, m), jnp.float32)
        known_mask_BT = jnp.zeros((b, num_frames), bool).at[:, 0].set(True)
        m_BTM = sample(
            denoise_timeline, schedule, noise_BTM, num_steps=num_steps, prediction="x0",
            sampler="ddim", clip_x0=False, known_x0=jnp.zeros_like(noise_BTM),
            known_mask=known_mask_BT, eta=eta, key=jax.random.fold_in(key, 1) if eta else None,
        )  # fmt: skip
        return m_BTM + alpha1_BM[:, None, :]

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
    chunk_size: int = 512,
    overlap: int = DEFAULT_OVERLAP,
    eta: float = 0.0,
    blend: str = "nearest",
    guidance_scale: float = 1.0,
    unconditional: bool = False,
    mesh: Mesh | None = None,
    progress: Callable[[int], None] | None = None,
) -> jax.Array:
    """`[B, num_frames, M]` codes: step 0 is alpha_1, the rest from overlapping windows.

    All windows of every sequence go through one compiled DDIM loop, `chunk_size` windows
    per model call; `mesh` splits them over devices. `progress` is called with each
    finished solver step. Guidance and `unconditional` are as in `sample_motion`; `eta` > 0
    adds DDIM's fresh noise at every step (0: deterministic). The model
    must take frame times (`model.frame_times`): without them a window cannot know where it
    lies, which is what made the segments restart.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames: expected >= 2, got {num_frames}")
    plan = motion_plan(num_frames, length, overlap)
    settings = (
        num_steps, prediction, float(guidance_scale), bool(unconditional), chunk_size, float(eta),
        blend,
    )  # fmt: skip
    run, relay = _compiled(graphdef, plan, settings, mesh)
    args = (params, schedule, jnp.asarray(alpha1_BM, jnp.float32), key)
    if mesh is not None:
        args = jax.device_put(args, NamedSharding(mesh, PartitionSpec()))
    relay.callback = progress
    try:
        return run(*args)
    finally:
        relay.callback = None


def join_statistics(alpha_BTM, length: int) -> dict[str, float]:
    """Mean |alpha_{t+1} - alpha_t| (per magnitude) at joins and within blocks of L-1 steps.

    A join is the step from the last step of one L-1-step block to the first of the next
    (steps t = k(L-1) -> k(L-1)+1, k >= 1): where LEO's chain starts each new chunk (and where
    the earlier anchored design restarted its segments).
    """
    delta_BTM = np.abs(np.diff(np.asarray(alpha_BTM, np.float64), axis=1))
    step = np.arange(delta_BTM.shape[1])  # delta index t is the move from step t to t+1
    is_join = (step > 0) & (step % (length - 1) == 0)
    return {
        "join_delta_mean": float(delta_BTM[:, is_join].mean()) if is_join.any() else 0.0,
        "within_delta_mean": float(delta_BTM[:, ~is_join].mean()),
    }
