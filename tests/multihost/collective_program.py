"""A small job for the multi-process tests: start up, one cross-process collective, then a
chosen fate:
  ok      end normally;
  uneven  the job shuts down JAX's distributed runtime, then process 1 ends while process 0
          works 3 s longer;
  raise   process 1 fails with an error while process 0 waits for it in a collective;
  exit    the same with `sys.exit("error: ...")`, as the launchers end on bad input;
  exit_all  every process exits that way at the same step;
  loop    keep exchanging;
  idle    wait outside any collective;
  fork    idle, and process 1 has forked a child that lives 40 s, as a data worker would.
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from anchored_jax.parallel.multihost import initialize_distributed, stop_at_once_on_error_exit

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
if fate in ("raise", "exit", "exit_all", "loop"):
    print("looping", flush=True)
    with stop_at_once_on_error_exit():
        for i in range(100_000):
            if fate == "exit_all" and i == 3:
                sys.exit(f"error: a problem every process sees (process {jax.process_index()})")
            if fate in ("raise", "exit") and i == 3 and jax.process_index() == 1:
                # Process 0 has passed exchange 2 and now waits for this process in exchange 3.
                time.sleep(2.0)
                if fate == "exit":
                    sys.exit("error: a problem only process 1 sees")
                raise RuntimeError("a fault of process 1 alone")
            multihost_utils.process_allgather(jnp.array([float(i)]))
            time.sleep(0.05)
