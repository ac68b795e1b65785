r"""The anchored-sampler benchmark (`python -m launch.benchmark sampler`).

  python -m launch.benchmark sampler --config configs/sdit.py:tiny
  python -m launch.benchmark sampler --config configs/sdit.py:S --frames 64,256 --steps 25

Two measurements in one run, on the config's model with random parameters (speed does not
depend on their values):

1. Loop overhead at `--overhead_frames` frames: the wall time of the whole jitted anchored
   sampler, with every segment in one chunk, divided by `steps x` the wall time of one jitted
   batched model forward at the same shapes (S segments of K frames, the same guidance
   branches). 1.0 would mean the loop, the anchor averaging and the solver cost nothing; the
   goal is <= 1.10.
2. Throughput: frames/s of the anchored sampler at each of `--frames` (with `--chunk_size`),
   its segments split over `--devices` local devices (0 = all; the overhead ratio uses one).

Every timing is after compilation (executables are compiled ahead of time and then run).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:tiny.")
_FRAMES = flags.DEFINE_list("frames", ["64", "256", "1024"], "Video lengths for frames/s.")
_OVERHEAD_T = flags.DEFINE_integer("overhead_frames", 256, "Video length of the overhead ratio.")
_STEPS = flags.DEFINE_integer("steps", 10, "DDIM steps per video.")
_CHUNK = flags.DEFINE_integer("chunk_size", 64, "Segments per chunk for the frames/s runs.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats of the forward (median taken).")
_DEVICES = flags.DEFINE_integer("devices", 1, "Devices for the frames/s runs; 0 = all local.")
_GUIDANCE = flags.DEFINE_string("guidance", "1.0,1.0", "CFG scales: identity,landmarks.")
flags.mark_flags_as_required(["config"])


def _timed(fn, *args, repeats=1):
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from anchored_jax.diffusion.schedules import make_schedule
    from anchored_jax.sampling.sampler_settings import SamplerSettings
    from anchored_jax.sampling.sdit_denoiser import make_sdit_denoiser
    from anchored_jax.sampling.segment_plan import plan_segments
    from anchored_jax.sampling.video_generation import sampler_call, sampler_mesh
    from anchored_jax.training.config_checks import ConfigError, validate_sdit_config
    from anchored_jax.training.sdit_setup import build_model
    from anchored_jax.training.train_state import split_model

    config = _CONFIG.value
    try:
        model_config = validate_sdit_config(config)
        frames_list = [int(f) for f in _FRAMES.value]
        try:
            identity_scale, landmark_scale = (float(v) for v in _GUIDANCE.value.split(","))
        except ValueError:
            raise ValueError(
                f"--guidance: expected 'identity,landmarks' scales, got {_GUIDANCE.value!r}"
            ) from None
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    graphdef, params = split_model(build_model(config, config.seed))
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    K = config.data.clip_frames
    size, channels = model_config.image_size, model_config.in_channels
    rng = np.random.default_rng(0)
    source = rng.uniform(-1, 1, (size, size, channels)).astype(np.float32)

    def sampler_for(T, chunk_size, devices=1):
        plan = plan_segments(T, K, 0, "contiguous")
        settings = SamplerSettings(
            num_steps=_STEPS.value,
            chunk_size=chunk_size,
            identity_scale=identity_scale,
            landmark_scale=landmark_scale,
        )
        sampler, _, args = sampler_call(
            graphdef, params, schedule, prediction=config.diffusion.prediction, plan=plan,
            landmarks_TLC=rng.uniform(0.2, 0.8, (T, model_config.num_landmarks, 3)),
            frame_times_T=np.arange(T) / config.data.fps, identity=source, source_HWC=source,
            settings=settings, key=jax.random.key(0),
            mesh=sampler_mesh(devices, plan.num_segments),
        )  # fmt: skip
        start = time.perf_counter()
        compiled = sampler.lower(*args).compile()
        return plan, settings, compiled, args, time.perf_counter() - start

    # ---------------------------------------------------------------- loop overhead
    T = _OVERHEAD_T.value
    plan, settings, compiled, args, compile_s = sampler_for(T, chunk_size=10**9)
    S = plan.num_segments
    sample_s = _timed(compiled, *args)

    @jax.jit
    def forward(params, x, t, cond, identity):
        model = nnx.merge(graphdef, params)
        return make_sdit_denoiser(model, identity, settings)(x, t, cond)

    x = jnp.asarray(rng.standard_normal((S, K, size, size, channels)), jnp.float32)
    t = jnp.full((S, K), 500, jnp.int32)
    cond = args[3]
    fwd = forward.lower(params, x, t, cond, args[7]).compile()
    forward_s = _timed(fwd, params, x, t, cond, args[7], repeats=_REPEATS.value)
    ratio = sample_s / (_STEPS.value * forward_s)

    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}")
    print(
        f"model: {model_config.width}w x {model_config.depth}d, K={K}, {size}x{size}x{channels}, "
        f"guidance branches: {len(settings.guidance_branches)}"
    )
    print(f"\nloop overhead at T={T} (S={S} segments in one chunk, {_STEPS.value} steps):")
    print(f"  compile (s)                      {compile_s:.2f}")
    print(f"  anchored sampler (s)             {sample_s:.3f}")
    print(f"  one batched forward (s)          {forward_s:.4f}")
    print(f"  sampler / (steps x forward)      {ratio:.3f}   (goal <= 1.10)")

    # ---------------------------------------------------------------- throughput
    print(
        f"\nthroughput (chunk_size={_CHUNK.value} per device, {_STEPS.value} steps, "
        f"devices={_DEVICES.value or 'all'}):"
    )
    print("  frames  segments  compile (s)  sample (s)  frames/s")
    for T in frames_list:
        plan, _, compiled, args, compile_s = sampler_for(T, _CHUNK.value, _DEVICES.value)
        seconds = _timed(compiled, *args)
        print(
            f"  {T:6d}  {plan.num_segments:8d}  {compile_s:11.2f}  {seconds:10.3f}  "
            f"{T / seconds:8.1f}"
        )
