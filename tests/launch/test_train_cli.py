"""`python -m launch.train` turns bad input into one clear line, not a traceback."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_train(*args, workdir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.train",
            "--config",
            "configs/sdit.py:tiny",
            "--workdir",
            str(workdir),
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--config.model.attention=diagonal", "model.attention: expected one of"),
        ("--config.data.sampler=every_other", "data.sampler: expected one of"),
        ("--config.model.patch_size=5", "model.patch_size"),
        ("--config.model.num_heads=3", "model.num_heads"),
        ("--config.data.clip_frames=20", "data.clip_frames"),
    ],
)
def test_bad_config_gives_one_line(tmp_path, override, expected):
    result = run_train(override, workdir=tmp_path / "run")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, result.stderr[-2000:]


def test_unwritable_workdir_gives_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_train(workdir=blocker / "run")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --workdir: cannot write to"), result.stderr[-2000:]
