"""Running the project's commands as a user does, and checking their one-line errors.

A plain module rather than a conftest: tests import these helpers by name (`tests.cli_testing`,
reachable through pytest's `pythonpath = ["."]`).
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m module args...` from the repository root, on one CPU device."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_train(config: str, workdir, *args: str) -> subprocess.CompletedProcess:
    """`python -m launch.train --config <config> --workdir <workdir> args...`."""
    return run_module("launch.train", "--config", config, "--workdir", workdir, *args)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The failed command's last stderr line, checked to be an `error: ` line with no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    return last
