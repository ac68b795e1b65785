"""Test-wide set-up: eight simulated CPU devices, fixed before jax is imported anywhere, and the
one trained tiny sDiT every test that needs a real checkpoint shares.

`tiny_sdit_run` trains a narrow tiny sDiT for a few steps with `python -m launch.train`, once
per test session: under pytest-xdist the workers share one folder under the session's base
temporary directory, and a file lock makes the first worker train while the others wait and
reuse its run. It also exports the run's inference checkpoint (`launch.export`'s layout).
"""

import fcntl
import os
import subprocess
import sys

import pytest

from anchored_jax.parallel.local_processes import simulated_devices_flags  # imports no jax

# Eight simulated devices, and XLA:CPU's collective abort timeout raised: a loaded 2-core
# machine can hold one device thread of a collective past XLA's default 40 s.
os.environ.setdefault("XLA_FLAGS", simulated_devices_flags(8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_STEPS = 6
# A narrow tiny sDiT: seconds to train a few steps and to sample on CPU.
TINY_OVERRIDES = (
    "--config.model.width=32",
    "--config.model.depth=1",
    "--config.model.num_heads=2",
    "--config.model.patch_size=8",
    "--config.model.identity_channels=(8, 16)",
    "--config.data.num_test_identities=2",
    "--config.data.videos_per_identity=1",
    f"--config.training.num_steps={TINY_STEPS}",
    "--config.training.warmup_steps=2",
    "--config.training.batch_size=4",
    f"--config.logging.eval_every_steps={TINY_STEPS}",
    "--config.logging.eval_batches=1",
    f"--config.logging.sample_every_steps={TINY_STEPS}",
    "--config.logging.sample_clips=1",
    "--config.logging.sample_steps=2",
    f"--config.checkpoint.every_steps={TINY_STEPS}",
)


def _shared_root(tmp_path_factory) -> str:
    """The session's base temporary folder, the same for every xdist worker."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def _train_and_export(root: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device: the run a user would make
    workdir = os.path.join(root, "workdir")
    commands = [
        ["launch.train", "--config", "configs/sdit.py:tiny", "--workdir", workdir,
         *TINY_OVERRIDES],
        ["launch.export", "--checkpoint", workdir, "--output", os.path.join(root, "export"),
         "--kinds", "inference"],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def tiny_sdit_run(tmp_path_factory) -> dict:
    """`{"workdir", "export"}`: a tiny sDiT trained for `TINY_STEPS` steps and its inference
    export, made once per session and shared by every worker."""
    root = os.path.join(_shared_root(tmp_path_factory), "tiny_sdit_run")
    os.makedirs(root, exist_ok=True)
    done = os.path.join(root, "DONE")
    with open(os.path.join(root, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker trains; the others wait here
        try:
            if not os.path.exists(done):
                _train_and_export(root)
                open(done, "w").close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dict(
        workdir=os.path.join(root, "workdir"), export=os.path.join(root, "export", "inference")
    )
