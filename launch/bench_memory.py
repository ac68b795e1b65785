r"""Compiled per-device memory of the sDiT train step across sizes, K, remat and meshes.

  python -m launch.benchmark memory                       # S/B/L/XL, K=8,16, 1 and 8 devices
  python -m launch.benchmark memory --sizes S,B --frames 8 --remat none,full

Nothing is allocated: the step is lowered on abstract (shape-only) state and compiled, and the
executable's `memory_analysis()` gives what one device needs (arguments + temporaries + outputs
not aliased to donated inputs). The 8-device mesh is fsdp=8 on simulated CPU devices, with the
per-device batch held fixed, so the table shows what sharding parameters and optimiser state
buys. Sizes are for 256px frames as 32x32x4 latents, patch 2.
"""

import os

# Eight simulated devices, set before jax is imported (a no-op if the caller already chose).
from anchored_jax.parallel.local_processes import simulated_devices_flags  # imports no jax

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = simulated_devices_flags(8, os.environ.get("XLA_FLAGS", ""))

from absl import flags  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["S", "B", "L", "XL"], "Model sizes.")
_FRAMES = flags.DEFINE_list("frames", ["8", "16"], "Clip lengths K.")
_REMAT = flags.DEFINE_list(
    "remat", ["none", "dots", "save_attention_out", "full"], "Remat policies."
)
_DEVICES = flags.DEFINE_list("devices", ["1", "8"], "Mesh sizes (the 8-device mesh is fsdp).")
_PER_DEVICE_BATCH = flags.DEFINE_integer("per_device_batch", 1, "Clips per device.")

GIB = 2**30
BUDGETS_GB = (16, 80, 141)


def step_memory_bytes(size: str, frames: int, remat: str, devices: int, per_device: int) -> int:
    import jax
    import numpy as np

    from anchored_jax.evaluation.step_timing import StepProgram
    from anchored_jax.parallel.logical_sharding import use_rules
    from anchored_jax.training.sdit_setup import MODEL_INPUTS, make_sdit_setup
    from configs import sdit

    config = sdit.get_config(size)
    config.data.clip_frames = frames
    config.model.remat_policy = remat
    config.training.batch_size = per_device * devices
    config.mesh.num_devices = devices
    config.mesh.ici = dict(data=1, fsdp=devices, tensor=1, sequence=1)
    setup = make_sdit_setup(config)
    m = config.model
    B, K, S = config.training.batch_size, frames, m.image_size
    shapes = {
        "video_BKHWC": (B, K, S, S, m.in_channels),
        "times_BK": (B, K),
        "landmarks_BKLC": (B, K, m.num_landmarks, m.landmark_dim),
        "identity_BHWC": (B, S, S, m.in_channels),
    }
    batch = {
        k: jax.ShapeDtypeStruct(shapes[k], np.float32, sharding=setup.input_shardings[k])
        for k in MODEL_INPUTS
    }
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=setup.replicated)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        compiled = StepProgram(setup.train_step).lower(setup.restore_target(), batch, key).compile()
    mem = compiled.memory_analysis()
    return (
        mem.temp_size_in_bytes
        + mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
    )


def main(argv):
    del argv
    print("| size | K | remat | devices | GiB per device | fits in |")
    print("|------|---|-------|---------|----------------|---------|")
    for size in _SIZES.value:
        for frames in map(int, _FRAMES.value):
            for remat in _REMAT.value:
                for devices in map(int, _DEVICES.value):
                    nbytes = step_memory_bytes(
                        size, frames, remat, devices, _PER_DEVICE_BATCH.value
                    )
                    fits = [f"{gb} GB" for gb in BUDGETS_GB if nbytes < gb * 1e9]
                    print(
                        f"| {size} | {frames} | {remat} | {devices} | {nbytes / GIB:.2f} | "
                        f"{', '.join(fits) or 'none'} |",
                        flush=True,
                    )
