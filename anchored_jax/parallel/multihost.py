"""Multi-process start-up and global batches.

On a TPU pod every worker runs the same command and JAX finds its peers by itself; under SLURM
the job's environment names them. A plain single process skips all of this quietly.
"""

import os
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding

# Environment variables that mean "this process is one of several".
_CLUSTER_HINTS = (
    "JAX_COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def _slurm_multi_task() -> bool:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize()` when running as part of a cluster.

    Returns whether it did. Must run before anything touches the devices.
    """
    if jax.distributed.is_initialized():
        return True
    if not (any(os.environ.get(k) for k in _CLUSTER_HINTS) or _slurm_multi_task()):
        return False
    # TPU pods and SLURM are auto-detected by JAX's cluster plugins; an explicit coordinator
    # address (with JAX_NUM_PROCESSES / JAX_PROCESS_ID) works everywhere else.
    jax.distributed.initialize()
    logging.info(
        "Process %d of %d; %d local of %d global devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def process_batch_size(global_batch_size: int) -> int:
    """This process's share of the global batch; one line naming the field if it is uneven."""
    n_proc = jax.process_count()
    if global_batch_size % n_proc:
        raise ValueError(
            f"training.batch_size: {global_batch_size} is not divisible by {n_proc} processes"
        )
    return global_batch_size // n_proc


def global_batch(
    local_batch: Mapping[str, np.ndarray], shardings: Mapping[str, NamedSharding]
) -> dict[str, jax.Array]:
    """Assembles each process's slice of the batch into one global, sharded array per key."""
    return {
        name: jax.make_array_from_process_local_data(shardings[name], np.asarray(value))
        for name, value in local_batch.items()
    }
