"""Training survives faults: kill -9 at any point, SIGTERM, a checkpoint save that fails.

The kill -9 suite runs `python -m launch.train` on a very small sDiT in a subprocess, kills it
at ten seeded random points (half of them while a checkpoint is being written) and restarts it
in the same workdir until it finishes. The final train state must be bitwise equal to that of
an uninterrupted run, and every training loss that any of the processes logged must equal the
uninterrupted run's loss at that step. The processes share a persistent compilation cache, so
a restart costs its imports, not a compile.
"""

import contextlib
import errno
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from anchored_jax.parallel.logical_sharding import use_rules
from anchored_jax.training.checkpointing import CheckpointSaveError, RunCheckpoints
from anchored_jax.training.sdit_setup import make_sdit_setup
from configs import sdit
from data_pipelines.pipeline import build_clip_dataset

REPO = Path(__file__).resolve().parents[2]
NUM_STEPS = 24
# A process spends its time starting up, not training: one block, 16 tokens per frame.
OVERRIDES = {
    "training.num_steps": NUM_STEPS,
    "training.batch_size": 2,
    "training.warmup_steps": 2,
    "data.image_size": 32,
    "data.clip_frames": 2,
    "data.num_train_identities": 4,
    "data.num_test_identities": 1,
    "data.videos_per_identity": 1,
    "data.video_frames": 16,
    "data.max_window": 8,
    "model.patch_size": 8,
    "model.width": 32,
    "model.depth": 1,
    "model.num_heads": 2,
    "model.identity_channels": (8,),
    "mesh.num_devices": 1,
    "checkpoint.every_steps": 2,
    "logging.log_every_steps": 1,  # every step's loss is compared
    "logging.eval_every_steps": 1000,
    "logging.sample_every_steps": 1000,
    "logging.eval_batches": 1,
    "logging.sample_clips": 1,
    "logging.sample_steps": 1,
}
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax writes step N here, then renames it to N
LOGGED_STEP = re.compile(r"\] \[(\d+)\] train_\w+=")
START_STEP = re.compile(r"starting at step (\d+) of")


def run_config():
    config = sdit.get_config("tiny")
    for name, value in OVERRIDES.items():
        section, field = name.split(".")
        config[section][field] = value
    return config


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
    """One persistent compilation cache for every process this test run starts.

    pytest-xdist workers share it (their temp folders have one parent), so only the first
    process compiles; a torn entry read by a concurrent process is only compiled again.
    """
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax_cache"
    path.mkdir(exist_ok=True)
    return path


class Training:
    """One `python -m launch.train` process; its log goes to a file the test polls."""

    def __init__(
        self,
        workdir: Path,
        log_path: Path,
        cache: Path,
        *flags: str,
        config: str = "configs/sdit.py:tiny",
        overrides: dict = OVERRIDES,
    ):
        self.workdir, self.log_path = workdir, log_path
        self.started_ns = time.time_ns()
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            TF_CPP_MIN_LOG_LEVEL="3",
            JAX_COMPILATION_CACHE_DIR=str(cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
        env.pop("XLA_FLAGS", None)  # one CPU device, not the tests' eight
        command = [sys.executable, "-m", "launch.train", "--config", config]
        command += [f"--workdir={workdir}", *flags]
        command += [f"--config.{name}={value}" for name, value in overrides.items()]
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def last_logged_step(self) -> int:
        return max((int(s) for s in LOGGED_STEP.findall(self.log())), default=0)

    def start_step(self) -> int:
        found = START_STEP.findall(self.log())
        assert found, self.log()[-3000:]
        return int(found[0])

    def own_unfinished_writes(self) -> list[int]:
        """Steps this process has begun writing and not yet renamed into place."""
        steps = []
        for name in _listdir(self.workdir / "checkpoints"):
            step = name[: -len(TMP_SUFFIX)]
            if name.endswith(TMP_SUFFIX) and step.isdigit():
                try:
                    made = os.stat(self.workdir / "checkpoints" / name).st_ctime_ns
                except FileNotFoundError:  # renamed into place meanwhile
                    continue
                if made >= self.started_ns:  # not left over by an earlier, killed process
                    steps.append(int(step))
        return steps

    def writing_checkpoint(self, at_least: int) -> bool:
        return any(step >= at_least for step in self.own_unfinished_writes())

    def wait_for(self, condition, timeout: float = 240.0) -> bool:
        """Polls `condition` until it holds (True) or the process ends first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.proc.poll() is not None:
                return condition()
            time.sleep(0.002)
        self.proc.kill()
        raise TimeoutError(f"training process stuck; log tail:\n{self.log()[-3000:]}")

    def kill_9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def finish(self, timeout: float = 240.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def checkpoints_on_disk(workdir: Path) -> tuple[list[int], list[int]]:
    """(finished steps, steps whose write was cut short) under workdir/checkpoints."""
    names = _listdir(workdir / "checkpoints")
    finished = sorted(int(n) for n in names if n.isdigit())
    partial = sorted(int(n[: -len(TMP_SUFFIX)]) for n in names if n.endswith(TMP_SUFFIX))
    return finished, partial


def logged_losses(events_file: Path) -> dict[int, np.float32]:
    """`step -> train_loss` from a TensorBoard event file; a record cut off by a kill ends it."""
    from tensorboard.compat.proto import event_pb2

    data, offset, losses = events_file.read_bytes(), 0, {}
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length
        if end + 4 > len(data):
            break
        event = event_pb2.Event.FromString(data[offset + 12 : end])
        for value in event.summary.value:
            if value.tag == "train_loss":
                tensor = value.tensor
                raw = np.frombuffer(tensor.tensor_content, np.float32)
                losses[event.step] = raw[0] if raw.size else np.float32(tensor.float_val[0])
        offset = end + 4
    return losses


def final_state(workdir: Path, config):
    """The train state and data-iterator position saved at the last step, on the host."""
    setup = make_sdit_setup(config)
    data_iter = iter(build_clip_dataset(config.data, split="train", batch_size=2, seed=0))
    checkpoints = RunCheckpoints(str(workdir), config.checkpoint)
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        state = checkpoints.restore(NUM_STEPS, setup.restore_target(), data_iter)
    checkpoints.close()
    return jax.tree.map(np.asarray, state), data_iter.get_state()


@pytest.mark.slow  # eleven process starts; SIGTERM and failed-save tests stay in the default run
def test_kill_9_at_ten_random_points_resumes_bit_exactly(tmp_path, compile_cache):
    reference = Training(tmp_path / "reference", tmp_path / "reference.log", compile_cache)
    # The killed runs start once the reference has compiled, so each of them reads its
    # executables from the cache (on two cores, two cold compiles at once only slow both).
    assert reference.wait_for(lambda: reference.last_logged_step() >= 1), reference.log()
    rng = random.Random(20240715)
    targets = sorted(rng.sample(range(2, NUM_STEPS - 1), 10))
    kinds = ["during_save"] * 5 + ["after_step"] * 5
    rng.shuffle(kinds)
    workdir = tmp_path / "killed"
    resume_at, history = 0, []
    for i, (target, kind) in enumerate(zip(targets, kinds)):
        run = Training(workdir, tmp_path / f"killed_{i}.log", compile_cache)
        if kind == "during_save":
            hit = run.wait_for(lambda: run.writing_checkpoint(target))  # noqa: B023
        else:
            hit = run.wait_for(lambda: run.last_logged_step() >= target)  # noqa: B023
        assert hit, f"run {i} ended before its kill point:\n{run.log()[-3000:]}"
        run.kill_9()
        # A restart resumes from the newest *finished* checkpoint, never a half-written one.
        assert run.start_step() == resume_at, (history, run.log()[-3000:])
        cut_short = run.own_unfinished_writes()
        resume_at = max(checkpoints_on_disk(workdir)[0], default=0)
        assert all(step > resume_at for step in cut_short)
        history.append(dict(kind=kind, target=target, cut_short=cut_short, resume_at=resume_at))

    last = Training(workdir, tmp_path / "last.log", compile_cache)
    assert last.finish() == 0, last.log()[-3000:]
    assert last.start_step() == resume_at
    assert reference.finish() == 0, reference.log()[-3000:]
    # Most kills aimed at a save landed while it was being written (and were not resumed from).
    print("kills:", history)
    assert sum(bool(h["cut_short"]) for h in history) >= 3, history

    config = run_config()
    (expected, expected_iter), (got, got_iter) = (
        final_state(tmp_path / "reference", config),
        final_state(workdir, config),
    )
    assert int(got.step) == NUM_STEPS and got_iter == expected_iter
    leaves_expected, leaves_got = jax.tree.leaves(expected), jax.tree.leaves(got)
    assert len(leaves_expected) == len(leaves_got) > 10
    for a, b in zip(leaves_expected, leaves_got, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)  # bitwise: params, Adam, EMA, counters

    (reference_events,) = (tmp_path / "reference").glob("events.out.tfevents.*")
    reference_losses = logged_losses(reference_events)
    assert sorted(reference_losses) == list(range(1, NUM_STEPS + 1))
    seen = set()
    for events in sorted(workdir.glob("events.out.tfevents.*")):
        for step, loss in logged_losses(events).items():
            assert loss == reference_losses[step], (events.name, step)
            seen.add(step)
    assert seen == set(reference_losses)
    evals = [json.loads(line) for line in open(workdir / "eval_metrics.jsonl")]
    reference_evals = [json.loads(line) for line in open(tmp_path / "reference/eval_metrics.jsonl")]
    assert evals[-1] == reference_evals[-1] and evals[-1]["step"] == NUM_STEPS


def test_sigterm_saves_the_step_reached_exits_0_and_resumes(tmp_path, compile_cache):
    workdir = tmp_path / "run"
    run = Training(workdir, tmp_path / "first.log", compile_cache)
    assert run.wait_for(lambda: run.last_logged_step() >= 5), run.log()[-3000:]
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=60) == 0, run.log()[-3000:]
    assert time.monotonic() - sent < 60
    assert "SIGTERM received: saving a checkpoint and stopping." in run.log()
    finished, partial = checkpoints_on_disk(workdir)
    (events,) = workdir.glob("events.out.tfevents.*")
    reached = max(logged_losses(events))
    assert 5 <= reached < NUM_STEPS  # stopped mid-run ...
    assert finished[-1] == reached and not partial  # ... with a finished checkpoint there

    again = Training(workdir, tmp_path / "second.log", compile_cache)
    assert again.finish() == 0, again.log()[-3000:]
    assert again.start_step() == reached
    assert checkpoints_on_disk(workdir)[0][-1] == NUM_STEPS


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    """The disk fills while step 4 is written: one clear error, and step 2 still restores."""
    from etils.epath import backend

    config = run_config()
    setup = make_sdit_setup(config)
    data_iter = iter(build_clip_dataset(config.data, split="train", batch_size=2, seed=0))
    next(data_iter)
    # A train state of random values in its real layout (compiling the initialiser costs more).
    rng = np.random.default_rng(0)
    state = jax.tree.map(
        lambda s: jax.device_put(rng.standard_normal(s.shape).astype(s.dtype), s.sharding),
        setup.restore_target(),
    )
    saved = [np.asarray(x) for x in jax.tree.leaves(state)]
    checkpoints = RunCheckpoints(str(tmp_path), config.checkpoint)
    checkpoints.save(2, state, data_iter, config)
    position = data_iter.get_state()
    next(data_iter)
    real_open = open

    def disk_full_in_step_4(path, mode="r", **kwargs):
        if "w" in mode and f"4{TMP_SUFFIX}" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, **kwargs)

    # orbax writes its metadata, the config item and the commit marker through this `open`.
    monkeypatch.setattr(backend, "open", disk_full_in_step_4, raising=False)
    with pytest.raises(CheckpointSaveError) as error:
        checkpoints.save(4, state, data_iter, config)
        checkpoints.save(6, state, data_iter, config)  # where a failed async write surfaces
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}/checkpoints: writing step 4 failed ([Errno 28] No ")
    assert message.endswith("; the latest complete checkpoint is step 2")
    with contextlib.suppress(CheckpointSaveError):  # the failed write's other parts may report
        checkpoints.close()
    monkeypatch.undo()

    # A restarted run sees step 2 as the latest, restores it exactly, and can write step 4.
    assert checkpoints_on_disk(tmp_path) == ([2], [4])
    checkpoints = RunCheckpoints(str(tmp_path), config.checkpoint)
    assert checkpoints.latest_step() == 2
    with jax.set_mesh(setup.mesh), use_rules(setup.rules):
        restored = checkpoints.restore(2, setup.restore_target(), data_iter)
        assert data_iter.get_state() == position
        for a, b in zip(saved, jax.tree.leaves(restored), strict=True):
            assert np.array_equal(a, np.asarray(b))
        checkpoints.save(4, restored, data_iter, config)
        checkpoints.wait_until_finished()
    assert checkpoints_on_disk(tmp_path) == ([2, 4], [])
    checkpoints.close()


# LEO's animator and LMDM train through the same loop: SIGTERM saves the step reached, exits 0,
# and the resumed run logs exactly the losses of an uninterrupted one.
LEO_RUNS = {
    "animator": (
        "configs/animator.py:tiny",
        {
            "data.image_size": 32,
            "data.num_train_identities": 2,
            "data.num_test_identities": 1,
            "data.videos_per_identity": 2,
            "model.style_dim": 16,
            "model.motion_dim": 4,
            "model.channel_base": 256,
            "model.max_channels": 8,
            "training.batch_size": 4,
            "training.num_steps": 16,
            "checkpoint.every_steps": 2,
            "logging.log_every_steps": 1,
            "logging.eval_every_steps": 1000,
            "logging.eval_videos": 1,
            "logging.figure_videos": 1,
            "logging.eval_frames": 2,
            "losses.keypoint_weight": 0.0,  # its regressor's first build takes ~1.5 minutes
        },
    ),
    "lmdm": (
        "configs/lmdm.py:tiny",
        {
            "data.code_source": "landmarks",  # stand-in codes: no animator run needed
            "data.num_train_identities": 4,
            "data.num_test_identities": 2,
            "data.videos_per_identity": 2,
            "data.video_frames": 24,
            "model.length": 8,
            "model.width": 32,
            "model.depth": 1,
            "model.num_heads": 2,
            "diffusion.num_timesteps": 100,
            "diffusion.sample_steps": 2,
            "training.batch_size": 16,
            "training.num_steps": 16,
            "training.warmup_steps": 2,
            "checkpoint.every_steps": 2,
            "logging.log_every_steps": 1,
            "logging.eval_sequences": 4,
            "logging.chain_frames": 8,
            "logging.chain_sequences": 1,
        },
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(LEO_RUNS))
def test_leo_tasks_sigterm_and_resume_log_the_uninterrupted_losses(task, tmp_path, compile_cache):
    config, overrides = LEO_RUNS[task]
    steps = overrides["training.num_steps"]

    def start(name):
        return Training(
            tmp_path / name, tmp_path / f"{name}.log", compile_cache, config=config,
            overrides=overrides,
        )  # fmt: skip

    reference = start("reference")
    assert reference.finish() == 0, reference.log()[-3000:]
    run = start("run")
    assert run.wait_for(lambda: run.last_logged_step() >= 4), run.log()[-3000:]
    run.proc.send_signal(signal.SIGTERM)
    assert run.finish(timeout=120) == 0, run.log()[-3000:]
    finished, partial = checkpoints_on_disk(tmp_path / "run")
    (events,) = (tmp_path / "run").glob("events.out.tfevents.*")
    reached = max(logged_losses(events))
    assert 4 <= reached < steps and finished[-1] == reached and not partial
    again = start("run")
    assert again.finish() == 0, again.log()[-3000:]
    assert again.start_step() == reached
    (reference_events,) = (tmp_path / "reference").glob("events.out.tfevents.*")
    expected = logged_losses(reference_events)
    assert sorted(expected) == list(range(1, steps + 1))
    seen = {}
    for events in sorted((tmp_path / "run").glob("events.out.tfevents.*")):
        seen.update(logged_losses(events))
    assert seen == expected  # bitwise: the same float32 at every step
