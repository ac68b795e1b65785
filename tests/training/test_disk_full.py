"""A disk that fills up during training, on a real (tmpfs) filesystem.

The run trains on a small tmpfs mount; once its first checkpoint is on disk the test fills the
filesystem, so a later checkpoint write fails where orbax writes the array data. The run must
stop with one `error:` line naming the step that failed and the latest complete one, not a
wall of tracebacks; after space is freed, the same command resumes from that step. Mounting
needs root: elsewhere the test is skipped with the reason.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.test_fault_injection import OVERRIDES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _command(workdir: Path, num_steps: int) -> list[str]:
    overrides = {**OVERRIDES, "training.num_steps": num_steps, "checkpoint.every_steps": 5}
    return [
        sys.executable, "-m", "launch.train", "--config", "configs/sdit.py:tiny",
        "--workdir", str(workdir), *(f"--config.{k}={v}" for k, v in overrides.items()),
    ]  # fmt: skip


def _fill(mount: Path) -> Path:
    """Writes zeros until the filesystem is full; returns the filler file."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        block = bytes(1 << 20)
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow  # two training processes, about a minute
def test_a_full_disk_stops_the_run_with_one_line_and_the_run_resumes(small_disk):
    workdir = small_disk / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    process = subprocess.Popen(
        _command(workdir, 2000), cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    checkpoints = workdir / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints.is_dir() and any(p.isdigit() for p in os.listdir(checkpoints))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    filler = _fill(small_disk)
    _, stderr = process.communicate(timeout=300)

    assert process.returncode != 0, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "failed" in errors[0] and "the latest complete checkpoint is step" in errors[0]
    assert stderr.count("Traceback") == 0, stderr[-3000:]
    latest = int(errors[0].rsplit("step", 1)[1].split()[0].strip(".;)"))
    assert latest >= 5

    filler.unlink()  # space again: the same command resumes from a complete step, never 0
    resumed = subprocess.run(
        _command(workdir, latest + 5), cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    started = re.findall(r"starting at step (\d+) of", resumed.stderr)
    assert started == [str(latest)], (started, latest)
