r"""Sharding overhead: the same train step on 1 device and on an N-device mesh, in one run.

  python -m launch.benchmark scaling --config configs/sdit.py:tiny --devices 8 --batch_size 16

The global batch is the same on both meshes, so on simulated CPU devices (which share the same
cores) the ideal is equal tokens/s: the ratio shows what partitioning and collectives cost.
"""

import os

from anchored_jax.parallel.local_processes import simulated_devices_flags  # imports no jax

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = simulated_devices_flags(8, os.environ.get("XLA_FLAGS", ""))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from anchored_jax.evaluation.step_timing import measure_train_step, print_table  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/sdit.py:S.")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Batch size; 0 = the config's (capped at 8).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step.")
flags.mark_flags_as_required(["config"])

_DEVICES = flags.DEFINE_integer("devices", 8, "Devices of the sharded mesh (all on data).")
_AXIS = flags.DEFINE_enum("axis", "data", ["data", "fsdp"], "Mesh axis the devices go on.")


def main(argv):
    del argv
    base = _CONFIG.value
    base.training.batch_size = _BATCH.value or base.training.batch_size
    results = {}
    for devices in (1, _DEVICES.value):
        config = base.copy_and_resolve_references()
        config.mesh.num_devices = devices
        config.mesh.ici = dict(data=1, fsdp=1, tensor=1, sequence=1) | {_AXIS.value: devices}
        results[devices] = measure_train_step(config, _STEPS.value)
    one, many = results[1], results[_DEVICES.value]
    print_table(
        [
            ("global batch", str(base.training.batch_size)),
            ("1 device: step (s)", f"{one['step_s']:.4f}"),
            ("1 device: tokens/s", f"{one['tokens_per_s']:,.0f}"),
            (f"{_DEVICES.value} devices ({_AXIS.value}): step (s)", f"{many['step_s']:.4f}"),
            (f"{_DEVICES.value} devices ({_AXIS.value}): tokens/s", f"{many['tokens_per_s']:,.0f}"),
            (
                "tokens/s ratio (sharded / 1 device)",
                f"{many['tokens_per_s'] / one['tokens_per_s']:.3f}",
            ),
            ("loss difference", f"{abs(many['loss'] - one['loss']):.2e}"),
        ]
    )
