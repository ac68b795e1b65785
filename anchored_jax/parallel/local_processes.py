"""Runs N processes of one command on this machine as one JAX job (`launch.cluster local`).

Each process gets JAX_COORDINATOR_ADDRESS (127.0.0.1 and a free port), JAX_NUM_PROCESSES and
JAX_PROCESS_ID, which `anchored_jax.parallel.multihost.initialize_distributed` reads, and,
with `devices_per_process`, that many simulated CPU devices. Their output lines come back
prefixed with `[p<id>]`. SIGTERM or SIGINT sent to the launcher reaches every process. When
one process fails, the others get `grace_s` seconds to stop on their own (the peer watch stops
them within seconds, JAX's heartbeats within a minute) and are then killed, so the job never
hangs.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")
_TERMINATE_FLAG = "--xla_cpu_collective_call_terminate_timeout_seconds"
# XLA:CPU aborts the process when a collective's device threads have not all arrived within
# 40 s (its default). Simulated devices share the host's cores, so on a loaded 2-core machine
# one device thread can lag that long with nothing wrong; allow 10 minutes instead.
CPU_COLLECTIVE_TERMINATE_S = 600


def simulated_devices_flags(count: int, flags: str = "") -> str:
    """`flags` (an XLA_FLAGS value) with `count` simulated CPU devices, replacing any device count
    already there, and XLA:CPU's collective abort timeout raised unless `flags` sets it."""
    flags = _DEVICE_COUNT_FLAG.sub("", flags).strip()
    if _TERMINATE_FLAG not in flags:
        flags = f"{flags} {_TERMINATE_FLAG}={CPU_COLLECTIVE_TERMINATE_S}"
    return f"{flags} --xla_force_host_platform_device_count={count}".strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(
    process_id: int,
    num_processes: int,
    port: int,
    devices_per_process: int | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of local process `process_id` of `num_processes`."""
    env = dict(os.environ if base is None else base)
    env.update(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(process_id),
        PYTHONUNBUFFERED="1",  # lines arrive as they are printed, not at exit
    )
    if devices_per_process is not None:
        env["XLA_FLAGS"] = simulated_devices_flags(devices_per_process, env.get("XLA_FLAGS", ""))
        env["JAX_PLATFORMS"] = "cpu"  # simulated devices exist on the CPU platform only
    return env


def _relay(prefix: str, stream, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"{prefix} {line.decode(errors='replace')}")
            sys.stdout.flush()
    stream.close()


def _exit_code(returncode: int) -> int:
    # A process killed by signal s reports -s; shells report 128 + s.
    return 128 - returncode if returncode < 0 else returncode


def run_local(
    command: Sequence[str],
    num_processes: int,
    *,
    devices_per_process: int | None = None,
    grace_s: float = 90.0,
    port: int | None = None,
) -> int:
    """Runs `command` as processes 0..N-1 and returns the job's exit code: 0 when all exit 0,
    else the first failing process's code (128 + signal for a process killed by one)."""
    port = free_port() if port is None else port
    lock = threading.Lock()
    procs, relays = [], []
    for i in range(num_processes):
        env = process_env(i, num_processes, port, devices_per_process)
        proc = subprocess.Popen(
            list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        relay = threading.Thread(target=_relay, args=(f"[p{i}]", proc.stdout, lock), daemon=True)
        relay.start()
        relays.append(relay)
        with lock:
            print(f"[cluster] process {i} of {num_processes}: pid {proc.pid}", flush=True)

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    first_failure: tuple[int, int] | None = None  # (process id, exit code)
    deadline = None
    try:
        while any(p.poll() is None for p in procs):
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is not None and code != 0 and first_failure is None:
                    first_failure = (i, _exit_code(code))
                    deadline = time.monotonic() + grace_s
                    with lock:
                        print(
                            f"[cluster] process {i} exited with code {first_failure[1]}; the "
                            f"others are killed if still running in {grace_s:.0f} s",
                            flush=True,
                        )
            if deadline is not None and time.monotonic() > deadline:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                break
            time.sleep(0.2)
        for proc in procs:
            proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for relay in relays:
        relay.join(timeout=5)
    codes = [_exit_code(p.returncode) for p in procs]
    if first_failure is None:  # all exited between two polls
        first_failure = next(((i, c) for i, c in enumerate(codes) if c), None)
    if first_failure is not None:
        print(f"[cluster] exit codes {codes}; process {first_failure[0]} failed first", flush=True)
    return 0 if first_failure is None else first_failure[1]
