"""A small job for the multi-process tests: start up, one cross-process collective, then a
chosen fate: `ok`, `raise` (process 1 fails with an error while process 0 waits for it in a
collective) or `loop` (keep exchanging)."""

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
if fate in ("raise", "loop"):
    print("looping", flush=True)
    for i in range(100_000):
        if fate == "raise" and i == 3 and jax.process_index() == 1:
            # Process 0 has passed exchange 2 and now waits for this process in exchange 3.
            time.sleep(2.0)
            raise RuntimeError("a fault of process 1 alone")
        multihost_utils.process_allgather(jnp.array([float(i)]))
        time.sleep(0.05)
