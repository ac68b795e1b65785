"""Multi-process start-up: settings from flags or the environment, and real local jobs.

The jobs are real processes on 127.0.0.1 started by `python -m launch.cluster local`; they
exchange data over gloo (CPU) collectives.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from anchored_jax.parallel.multihost import HEARTBEAT_TIMEOUT_S, resolve_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "collective_program.py")


def test_a_single_process_needs_nothing():
    assert resolve_cluster(environ={}) is None


def test_the_documented_environment_is_passed_on_whole():
    env = dict(JAX_COORDINATOR_ADDRESS="10.0.0.1:1234", JAX_NUM_PROCESSES="4", JAX_PROCESS_ID="3")
    assert resolve_cluster(environ=env) == dict(
        coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3
    )
    # Explicit values (launch.train's flags) win over the environment.
    assert resolve_cluster("h:9", 2, 0, environ=env) == dict(
        coordinator_address="h:9", num_processes=2, process_id=0
    )


def test_pods_and_slurm_are_left_to_jax_detection():
    assert resolve_cluster(environ={"SLURM_NTASKS": "8"}) == {}
    assert resolve_cluster(environ={"TPU_WORKER_HOSTNAMES": "a,b"}) == {}
    # A coordinator named by the user on SLURM: JAX takes the count and id from SLURM.
    assert resolve_cluster("h:1", environ={"SLURM_NTASKS": "2"}) == {"coordinator_address": "h:1"}


@pytest.mark.parametrize(
    "args, env, message",
    [
        (("h:1", None, 0), {}, "--num_processes (JAX_NUM_PROCESSES): missing"),
        ((None, 2, 0), {}, "--coordinator_address (JAX_COORDINATOR_ADDRESS): missing"),
        ((None, None, None), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"},
         "--process_id (JAX_PROCESS_ID): missing"),
        (("h:1", 2, 2), {}, "--process_id (JAX_PROCESS_ID): expected an integer < "
         "--num_processes (2), got 2"),
        (("h:1", 0, 0), {}, "--num_processes (JAX_NUM_PROCESSES): expected an integer >= 1"),
        ((None, None, None), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two",
                              "JAX_PROCESS_ID": "0"},
         "--num_processes (JAX_NUM_PROCESSES): expected an integer >= 1, got 'two'"),
        (("nohost", 2, 0), {}, "--coordinator_address (JAX_COORDINATOR_ADDRESS): expected "
         "host:port, got 'nohost'"),
    ],
)  # fmt: skip
def test_incomplete_or_bad_settings_are_one_line(args, env, message):
    with pytest.raises(ValueError) as e:
        resolve_cluster(*args, environ=env)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def _local(*args, timeout=240, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
    return subprocess.run(
        [sys.executable, "-m", "launch.cluster", "local", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, **kwargs,
    )  # fmt: skip


def test_local_launcher_runs_one_job_of_two_processes():
    run = _local("--processes", "2", "--devices_per_process", "3", "--", sys.executable, PROGRAM)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    # Each process saw the other's value (a real gloo all-gather) and all 6 devices.
    for p in (0, 1):
        assert f"[p{p}] gathered [1.0, 2.0] devices 6 local 3" in lines, run.stdout[-3000:]


def test_a_process_that_ends_normally_first_does_not_stop_the_others():
    # Its watch connection closes while process 0 still runs; the finish it announced at exit
    # tells process 0 that this is no failure.
    run = _local("--processes", "2", "--devices_per_process", "2", "--", sys.executable, PROGRAM,
                 "uneven")  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "[p0] finished after process 1" in run.stdout.splitlines(), run.stdout[-3000:]


def test_an_error_in_one_process_stops_the_job_in_seconds_with_one_line_each():
    start = time.monotonic()
    run = _local("--processes", "2", "--devices_per_process", "2", "--grace_s", "200", "--",
                 sys.executable, PROGRAM, "raise")  # fmt: skip
    elapsed = time.monotonic() - start
    assert run.returncode == 1, run.stdout[-3000:]
    assert "[cluster] exit codes [1, 1]" in run.stdout, run.stdout[-3000:]
    # Process 0 was inside a collective with process 1: it stops on its own, long before the
    # launcher's grace or JAX's heartbeat timeout, with one line saying why.
    assert elapsed < 60, elapsed
    lines = run.stdout.splitlines()
    (p0_error,) = [line for line in lines if line.startswith("[p0] error:")]
    assert "another process of the job stopped" in p0_error
    (p1_error,) = [line for line in lines if line.startswith("[p1] error:")]
    assert p1_error.endswith("RuntimeError: a fault of process 1 alone")
    assert "[p1] Traceback" in run.stdout  # a real fault keeps its traceback
    assert "[p0] Traceback" not in run.stdout and "Check failure" not in run.stdout


@pytest.mark.parametrize("fate", ["exit", "exit_all"])
def test_an_error_exit_stops_the_job_in_seconds_with_one_line_each(fate):
    # `sys.exit("error: ...")` (how the launchers refuse bad input) in process 1 alone, while
    # process 0 waits for it in a collective, or in every process at once. A plain exit would
    # wait 60 s at JAX's shutdown barrier and end the job in JAX's abort traces.
    start = time.monotonic()
    run = _local("--processes", "2", "--devices_per_process", "2", "--grace_s", "200", "--",
                 sys.executable, PROGRAM, fate)  # fmt: skip
    elapsed = time.monotonic() - start
    assert run.returncode == 1, run.stdout[-3000:]
    assert "[cluster] exit codes [1, 1]" in run.stdout, run.stdout[-3000:]
    assert elapsed < 60, elapsed
    lines = run.stdout.splitlines()
    errors = {p: [line for line in lines if line.startswith(f"[p{p}] error:")] for p in (0, 1)}
    assert all(len(e) == 1 for e in errors.values()), errors
    if fate == "exit":
        assert errors[1] == ["[p1] error: a problem only process 1 sees"]
        assert errors[0][0].endswith("process 1 stopped on an error"), errors
    assert "Check failure" not in run.stdout and "Terminating process" not in run.stdout


@pytest.mark.parametrize("fate", ["loop", "idle", "fork"])
def test_kill_9_of_one_process_makes_the_other_exit_in_seconds_with_one_line(fate):
    # `loop`: process 0 is exchanging with process 1; `idle`: it is outside any collective,
    # where only the peer watch (not gloo) can tell that process 1 is gone; `fork`: the same,
    # while a child of process 1 that outlives it holds copies of its file descriptors.
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.cluster", "local", "--processes", "2",
         "--devices_per_process", "2", "--grace_s", "300", "--", sys.executable, PROGRAM,
         fate],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    pids, looping = {}, set()
    for line in proc.stdout:
        if line.startswith("[cluster] process"):
            pids[int(line.split()[2])] = int(line.rsplit(" ", 1)[1])
        if line.endswith("looping\n"):
            looping.add(line[:4])
        if len(looping) == 2:
            break
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    rest = proc.communicate(timeout=HEARTBEAT_TIMEOUT_S + 60)[0]
    elapsed = time.monotonic() - killed
    # Far inside the documented bound (JAX's heartbeat timeout) and the launcher's 300 s grace.
    assert elapsed < 30, elapsed
    assert proc.returncode != 0
    assert "[cluster] exit codes [1, 137]" in rest, rest[-3000:]
    (p0_error,) = [line for line in rest.splitlines() if line.startswith("[p0] error:")]
    assert "stopped after another process of the job stopped" in p0_error
    if fate != "loop":
        assert p0_error.endswith("process 1 ended without finishing"), p0_error
    assert "Check failure" not in rest and "Traceback" not in rest, rest[-3000:]
