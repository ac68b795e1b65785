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


# Runs a launcher's `main` on several command lines in one process: each call gets fresh flag
# values, and file descriptor 2 is redirected so that everything written to stderr (absl and
# orbax logging, C++ warnings) is what is checked.
_DRIVER = r"""
import importlib, json, os, sys, tempfile
from absl import flags
from anchored_jax.pipelines.command_line import parse_flags
module = importlib.import_module(sys.argv[1])
module.define_flags()
results = []
for argv in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        code = 0
        try:
            module.main(parse_flags([sys.argv[1]] + argv))
        except SystemExit as e:
            message = e.code if isinstance(e.code, str) else None
            code = 1 if message is not None else (e.code or 0)
            if message is not None:
                sys.stderr.write(message + "\n")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        results.append(dict(argv=argv, code=code, stderr=capture.read().decode()))
print(json.dumps(results))
"""


def bad_invocations(module: str, argvs: list[list[str]], timeout: int = 600) -> list[dict]:
    """`[{argv, code, stderr}]` of `module`'s main run on each command line, in one process."""
    import json

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, module, json.dumps(argvs)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
