"""Multi-process start-up and global batches.

Where the processes come from, in order:
  1. explicit `coordinator_address`, `num_processes`, `process_id` (launch/train.py's flags);
  2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (all three;
     JAX itself reads only the first, so the other two are passed on explicitly);
  3. a TPU pod or a SLURM job with several tasks: JAX's cluster detection finds its peers.
A plain single process skips all of this quietly.

Processes on CPU exchange collectives over gloo (`python -m launch.cluster local` runs several
on one machine). A peer process that dies is noticed within seconds by the peer watch
(`peer_watch.py`), and survivors exit 1 with one line; a host that vanishes without closing
its connections is noticed by JAX's coordination service, which stops the survivors within
`HEARTBEAT_TIMEOUT_S` (plus a few seconds). Either way nothing waits in a collective forever.
"""

import contextlib
import os
import sys
import traceback
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging
from jax._src import distributed as jax_distributed
from jax.sharding import NamedSharding

from anchored_jax.parallel import peer_watch

# Environment variables that mean "JAX's cluster detection can find the peers".
_CLUSTER_HINTS = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")
ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
# A peer silent this long is dead, and the survivors exit (JAX's default is 100 s; a job that
# has lost a host should give its slot back within two minutes).
HEARTBEAT_TIMEOUT_S = 60
# How long a finishing process waits for the others at exit (JAX's default: 300 s).
SHUTDOWN_TIMEOUT_S = 60
# How long the first process waits for all others to connect (JAX's default): a pod's workers
# start together, but slow image pulls and imports can take minutes.
INITIALIZATION_TIMEOUT_S = 300


def _integer(value, name: str, lowest: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < lowest:
        raise ValueError(f"{name}: expected an integer >= {lowest}, got {value!r}")
    return number


def resolve_cluster(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict | None:
    """The `jax.distributed.initialize` arguments for this process, or None for a single one.

    Explicit values win over the environment. One ValueError line names the flag (and its
    variable) that is missing or wrong."""
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    count = _integer(num_processes if num_processes is not None else env.get(ENV_COUNT),
                     f"--num_processes ({ENV_COUNT})", 1)  # fmt: skip
    index = _integer(process_id if process_id is not None else env.get(ENV_ID),
                     f"--process_id ({ENV_ID})", 0)  # fmt: skip
    auto = any(env.get(k) for k in _CLUSTER_HINTS) or int(env.get("SLURM_NTASKS", "1")) > 1
    if address is None and count is None and index is None:
        return {} if auto else None  # {}: JAX's own detection fills everything in
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"--coordinator_address ({ENV_ADDRESS}): expected host:port, got {address!r}"
            )
    if not auto:
        for value, name in ((address, f"--coordinator_address ({ENV_ADDRESS})"),
                            (count, f"--num_processes ({ENV_COUNT})"),
                            (index, f"--process_id ({ENV_ID})")):  # fmt: skip
            if value is None:
                raise ValueError(
                    f"{name}: missing; a run outside a TPU pod or SLURM job needs the "
                    "coordinator address, the process count and this process's id"
                )
    if count is not None and index is not None and index >= count:
        raise ValueError(
            f"--process_id ({ENV_ID}): expected an integer < --num_processes ({count}), got {index}"
        )
    resolved = dict(coordinator_address=address, num_processes=count, process_id=index)
    return {k: v for k, v in resolved.items() if v is not None}


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls `jax.distributed.initialize` when this process is one of several.

    Returns whether it did. Must run before anything touches the devices. Bad or missing
    settings raise one ValueError line naming the flag and its environment variable.
    """
    if jax.distributed.is_initialized():
        return True
    cluster = resolve_cluster(coordinator_address, num_processes, process_id)
    if cluster is None:
        return False
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        # CPU devices of different processes talk over gloo (TCP); GPU and TPU ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        **cluster,
        initialization_timeout=INITIALIZATION_TIMEOUT_S,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
    )
    sys.excepthook = _stop_this_process
    # JAX's own client carries the watch's port in its key-value store (orbax reads the same
    # private state for its barriers).
    state = jax_distributed.global_state
    peer_watch.start(
        state.client, jax.process_index(), jax.process_count(), state.coordinator_address
    )
    logging.info(
        "Process %d of %d; %d local of %d global devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


# Errors that mean another process of the job is gone, not a fault of this one.
_LOST_PEER_SIGNS = (
    "Connection closed by peer",
    "Connection reset",
    "Broken pipe",
    "heartbeat",
    "UNAVAILABLE",
)


def _stop_this_process(kind, error, tb) -> None:
    """An uncaught error in one process of a job: one line, then exit at once.

    A normal Python exit would wait at JAX's shutdown barrier for peers that are themselves
    blocked in a collective with this process, so the job would hang for the barrier's
    timeout and end in an abort trace. Leaving now tells the peer watch (and closes this
    process's gloo connections), so the whole job stops within seconds.
    """
    message = (str(error).strip().splitlines() or [""])[0]
    # A collective that failed because a peer died can say so in words this list lacks; the
    # peer watch knows (its connection closes in the same instant as the peer's others).
    lost_peer = any(sign in message for sign in _LOST_PEER_SIGNS) or peer_watch.a_peer_has_ended(
        wait_s=0.5
    )
    trace = "" if lost_peer else "".join(traceback.format_exception(kind, error, tb))
    cause = "another process of the job stopped (see its log)" if lost_peer else "an error"
    peer_watch.stop_now(
        f"error: process {jax.process_index()} of {jax.process_count()} stopped after "
        f"{cause}: {kind.__name__}: {message}",
        trace,
    )


@contextlib.contextmanager
def stop_at_once_on_error_exit():
    """Inside: a `sys.exit` with an error, in a process of several, stops it the way an uncaught
    error does (`_stop_this_process`): its message as the one line, its peers told, no wait at
    JAX's shutdown barrier. A normal exit waits there for 60 s while the peers wait in a
    collective for this process, and the job then ends in JAX's abort traces."""
    try:
        yield
    except SystemExit as e:
        if e.code not in (None, 0) and jax.distributed.is_initialized():
            peer_watch.stop_now(e.code if isinstance(e.code, str) else f"error: exit code {e.code}")
        raise


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
