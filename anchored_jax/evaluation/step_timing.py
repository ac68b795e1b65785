"""Timing of the sDiT train step on random inputs of a config's shapes, for the benchmarks.

`measure_train_step` compiles the sharded step of `make_sdit_setup` and times it after one
warm-up; `launch.benchmark train`, `cpu` and `scaling` print its figures with `print_table`.
Random inputs keep the input pipeline out of the figures.
"""

import functools
import time


class StepProgram:
    """The setup's jitted train step as `(state, batch, key)` with `trace`, `lower` and calls.

    The training loop binds the step's frozen inputs with `functools.partial`; this reaches
    the jitted function underneath so a benchmark can trace and compile it.
    """

    def __init__(self, train_step):
        if isinstance(train_step, functools.partial) and hasattr(train_step.args[0], "trace"):
            self._jitted, self.extra = train_step.args[0], train_step.args[1:]
        else:
            self._jitted, self.extra = train_step, ()

    def trace(self, state, batch, key):
        return self._jitted.trace(state, batch, key, *self.extra)

    def lower(self, state, batch, key):
        return self._jitted.lower(state, batch, key, *self.extra)


def random_batch(config, batch_size: int, rng):
    """Inputs with the model's shapes: frames (or latents), sorted times, landmarks, identity."""
    import numpy as np

    m = config.model
    K = config.data.clip_frames
    frames = (batch_size, K, m.image_size, m.image_size, m.in_channels)
    times = np.sort(rng.uniform(0.0, 2.0, (batch_size, K)), axis=1)
    return dict(
        video_BKHWC=rng.standard_normal(frames, dtype=np.float32),
        times_BK=(times - times[:, :1]).astype(np.float32),
        landmarks_BKLC=rng.uniform(0, 1, (batch_size, K, m.num_landmarks, m.landmark_dim)).astype(
            np.float32
        ),
        identity_BHWC=random_identity(m, batch_size, rng),
    )


def random_identity(m, batch_size: int, rng):
    """The identity input of `model.identity`: a source image, a vector or a class label."""
    import numpy as np

    if m.identity == "encoder":
        shape = (batch_size, m.image_size, m.image_size, m.in_channels)
        return rng.standard_normal(shape, dtype=np.float32)
    if m.identity == "embedding":
        return rng.standard_normal((batch_size, m.identity_embed_dim), dtype=np.float32)
    return rng.integers(0, m.num_classes, (batch_size,)).astype(np.int32)


# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets; --peak_flops overrides.
KNOWN_PEAK_FLOPS = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def measure_train_step(config, steps: int) -> dict:
    """Compiles the sharded train step for `config` and times `steps` runs after a warm-up."""
    import jax
    import numpy as np

    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.models.sdit_config import SDiTConfig
    from anchored_jax.parallel.logical_sharding import use_rules
    from anchored_jax.training.sdit_setup import make_sdit_setup
    from anchored_jax.training.train_state import param_count

    model_config = SDiTConfig(**config.model.to_dict())
    batch_size, K = config.training.batch_size, config.data.clip_frames
    setup = make_sdit_setup(config)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = setup.init_state()
        batch = setup.to_device(random_batch(config, batch_size, np.random.default_rng(0)))
        key = jax.random.key(0)
        t0 = time.perf_counter()
        program = StepProgram(setup.train_step)
        traced = program.trace(state, batch, key)
        compiled = traced.lower().compile()
        compile_s = time.perf_counter() - t0
        state, metrics = compiled(state, batch, key, *program.extra)  # Warm-up.
        jax.block_until_ready(metrics)
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            state, metrics = compiled(state, batch, jax.random.fold_in(key, i), *program.extra)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        step_s = sum(times) / steps
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    tokens_per_frame = (model_config.image_size // model_config.patch_size) ** 2
    return dict(
        setup=setup,
        model_config=model_config,
        jaxpr=traced.jaxpr,
        memory=compiled.memory_analysis(),
        xla_flops=float(cost.get("flops", float("nan"))) if cost else float("nan"),
        compile_s=compile_s,
        step_s=step_s,
        step_s_median=sorted(times)[steps // 2],
        params=param_count(state.params),
        tokens_per_frame=tokens_per_frame,
        tokens_per_s=batch_size * K * tokens_per_frame / step_s,
        flops_per_step=sdit_train_flops_per_example(model_config, K) * batch_size,
        loss=float(metrics["loss"]),
    )


def print_table(rows) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
