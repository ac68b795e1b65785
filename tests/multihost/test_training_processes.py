"""sDiT training as a real two-process job on 127.0.0.1, against one process with 8 devices.

Every run is `python -m launch.train` with a shrunken tiny config (10 steps, checkpoints every
5). Two processes of 4 simulated CPU devices each run under `python -m launch.cluster local`
(gloo collectives); one process of 8 devices runs alone. The runs are real processes, killed
and signalled for real, so this file takes many minutes on two cores: it is `slow`.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from anchored_jax.parallel.local_processes import simulated_devices_flags
from anchored_jax.parallel.multihost import HEARTBEAT_TIMEOUT_S

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 10
OVERRIDES = [
    "--config=configs/sdit.py:tiny",
    "--config.model.width=32", "--config.model.depth=1", "--config.model.num_heads=2",
    "--config.model.patch_size=8", "--config.data.clip_frames=3",
    "--config.training.batch_size=8", f"--config.training.num_steps={NUM_STEPS}",
    "--config.training.warmup_steps=2", "--config.logging.log_every_steps=1",
    "--config.logging.eval_every_steps=1000", "--config.logging.eval_batches=1",
    "--config.logging.sample_every_steps=100000", "--config.checkpoint.every_steps=5",
]  # fmt: skip
# Float tolerance between device layouts: the same clips, reduced in another order.
RTOL = 1e-4
_LOSS = re.compile(r"\] \[(\d+)\] .*train_loss=([-+0-9.e]+)")


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(
        XLA_FLAGS=simulated_devices_flags(devices),
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",
    )
    return env


def _one_process(workdir, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launch.train", *OVERRIDES, f"--workdir={workdir}", *extra],
        cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _two_processes(workdir, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "launch.cluster", "local", "--processes", "2",
         "--devices_per_process", "4", "--grace_s", "300", "--",
         *OVERRIDES, f"--workdir={workdir}", *extra],
        cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _losses(output: str, prefix: str = "") -> dict[int, float]:
    """step -> logged train loss, from one process's lines (`prefix` "[p0]" in a job)."""
    losses = {}
    for line in output.splitlines():
        match = _LOSS.search(line) if line.startswith(prefix) else None
        if match:
            losses[int(match.group(1))] = float(match.group(2))
    return losses


def _pids(proc: subprocess.Popen, lines: list[str], until) -> dict[int, int]:
    """Reads the job's output until `until(line)`; returns process id -> pid."""
    pids = {}
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[cluster] process"):
            pids[int(line.split()[2])] = int(line.rsplit(" ", 1)[1])
        if until(line):
            return pids
    raise AssertionError("the job ended early:\n" + "".join(lines[-40:]))


def _saved_steps(workdir) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def _close(a: dict[int, float], b: dict[int, float], steps) -> None:
    np.testing.assert_allclose([a[s] for s in steps], [b[s] for s in steps], rtol=RTOL)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted 10-step runs: one process of 8 devices, and two processes of 4."""
    root = tmp_path_factory.mktemp("straight")
    one = _one_process(root / "one")
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    job = _two_processes(root / "two")
    two_out = job.communicate(timeout=900)[0]
    assert job.returncode == 0, two_out[-5000:]
    return dict(
        one=_losses(one.stderr + one.stdout), two=_losses(two_out, "[p0]"),
        two_p1=_losses(two_out, "[p1]"), two_dir=root / "two", root=root,
    )  # fmt: skip


def test_two_processes_of_4_devices_give_the_loss_curve_of_one_process_of_8(straight):
    steps = range(1, NUM_STEPS + 1)
    assert sorted(straight["one"]) == sorted(straight["two"]) == list(steps)
    _close(straight["one"], straight["two"], steps)
    _close(straight["two"], straight["two_p1"], steps)  # both processes log the global loss
    # Not a flat curve: the steps differ, so matching them is not a coincidence.
    assert np.ptp(list(straight["one"].values())) > 1e-3


def test_a_two_process_checkpoint_resumes_in_one_process_and_matches(straight):
    workdir = straight["root"] / "two_then_one"
    shutil.copytree(straight["two_dir"], workdir)
    for step in _saved_steps(workdir):  # keep step 5: resume mid-run
        if step > 5:
            shutil.rmtree(workdir / "checkpoints" / str(step))
    resumed = _one_process(workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 5" in resumed.stderr
    losses = _losses(resumed.stderr + resumed.stdout)
    assert sorted(losses) == list(range(6, NUM_STEPS + 1))
    _close(losses, straight["one"], range(6, NUM_STEPS + 1))


def test_sigterm_to_one_process_saves_the_same_step_on_both_and_resumes_exactly(straight, tmp_path):
    job = _two_processes(tmp_path)
    lines: list[str] = []
    pids = _pids(job, lines, lambda line: line.startswith("[p1]") and "] [2] train_" in line)
    os.kill(pids[1], signal.SIGTERM)  # the notice reaches process 1 only
    lines.append(job.communicate(timeout=300)[0])
    output = "".join(lines)
    assert job.returncode == 0, output[-5000:]
    assert "[cluster] exit codes" not in output  # printed only when a process fails
    saved = {
        p: [int(s) for s in re.findall(rf"\[p{p}\].*saving step (\d+) on every host", output)]
        for p in (0, 1)
    }
    assert len(saved[0]) == 1 and saved[0] == saved[1], saved
    (stop,) = saved[0]
    assert 2 <= stop < NUM_STEPS and max(_saved_steps(tmp_path)) == stop
    assert max(_losses(output, "[p0]")) == max(_losses(output, "[p1]")) == stop

    job = _two_processes(tmp_path)
    output = job.communicate(timeout=900)[0]
    assert job.returncode == 0, output[-5000:]
    losses = _losses(output, "[p0]")
    assert sorted(losses) == list(range(stop + 1, NUM_STEPS + 1))
    _close(losses, straight["two"], losses)


def test_kill_9_of_one_process_stops_the_other_within_the_bound_and_both_resume(straight, tmp_path):
    job = _two_processes(tmp_path)
    lines: list[str] = []
    pids = _pids(job, lines, lambda line: line.startswith("[p0]") and "] [7] train_" in line)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    lines.append(job.communicate(timeout=HEARTBEAT_TIMEOUT_S + 120)[0])
    elapsed = time.monotonic() - killed
    output = "".join(lines)
    assert elapsed < 30, elapsed  # the peer watch; JAX's heartbeats would take 60 s
    assert job.returncode != 0
    assert "[cluster] exit codes [1, 137]" in output, output[-3000:]
    # Wherever process 0 was (a collective, a save, host work), it stops with one line.
    (p0_error,) = [line for line in output.splitlines() if line.startswith("[p0] error:")]
    assert "another process of the job stopped" in p0_error
    assert "Check failure" not in output and "[p0] Traceback" not in output, output[-3000:]

    latest = max(_saved_steps(tmp_path), default=0)
    job = _two_processes(tmp_path)
    output = job.communicate(timeout=900)[0]
    assert job.returncode == 0, output[-5000:]
    losses = _losses(output, "[p0]")
    assert sorted(losses) == list(range(latest + 1, NUM_STEPS + 1))
    _close(losses, straight["two"], losses)
