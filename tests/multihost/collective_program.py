"""A small job for the multi-process tests: start up, one cross-process collective, then a
chosen fate: `ok`, `uneven` (the job shuts down JAX's distributed runtime, then process 1
ends while process 0 works 3 s longer), `raise` (process 1 fails with an error while process
0 waits for it in a collective), `loop` (keep exchanging), `idle` (wait outside any
collective) or `fork` (idle, and process 1 has forked a child that lives 40 s, as a data
worker would)."""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from anchored_jax.parallel.multihost import initialize_distributed

assert initialize_distributed(), "expected a multi-process environment"
gathered = multihost_utils.process_allgather(jnp.array([jax.process_index() + 1.0]))
print(
    f"gathered {np.asarray(gathered).ravel().tolist()} devices {jax.device_count()} "
    f"local {jax.local_device_count()}",
    flush=True,
)
fate = sys.argv[1] if len(sys.argv) > 1 else "ok"
if fate == "uneven":
    jax.distributed.shutdown()
    if jax.process_index() == 0:
        time.sleep(3.0)
        print("finished after process 1", flush=True)
if fate == "fork" and jax.process_index() == 1 and os.fork() == 0:
    time.sleep(40.0)
    os._exit(0)
if fate in ("idle", "fork"):
    print("looping", flush=True)
    time.sleep(600)
if fate in ("raise", "loop"):
    print("looping", flush=True)
    for i in range(100_000):
        if fate == "raise" and i == 3 and jax.process_index() == 1:
            # Process 0 has passed exchange 2 and now waits for this process in exchange 3.
            time.sleep(2.0)
            raise RuntimeError("a fault of process 1 alone")
        multihost_utils.process_allgather(jnp.array([float(i)]))
        time.sleep(0.05)
