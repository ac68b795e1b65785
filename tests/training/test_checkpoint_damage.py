"""Damaged checkpoints are skipped: restore falls back to the previous complete step with one
warning line naming what was wrong, or stops with one line when no step is usable. Each test
damages a real checkpoint written by `RunCheckpoints` (state, iterator, config, fingerprint).
"""

import json
import os
from pathlib import Path

import grain
import jax
import ml_collections
import numpy as np
import pytest

from anchored_jax.training.checkpointing import CheckpointDamagedError, RunCheckpoints

CONFIG = ml_collections.ConfigDict(dict(task="test", seed=0))
OPTIONS = ml_collections.ConfigDict(dict(max_to_keep=3, async_save=False))


def state_at(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {
        "step": np.int32(step),
        "params": {"w": rng.normal(size=(128, 128)).astype(np.float32)},
        "moments": {"w": rng.uniform(0, 1, size=(128, 128)).astype(np.float32)},
    }


def new_iterator():
    return iter(grain.MapDataset.range(10_000).shuffle(seed=0).batch(4).to_iter_dataset())


def write_run(workdir: Path, steps=(2, 4)) -> dict[int, dict]:
    """Checkpoints at `steps`, the iterator advanced `step` batches at each; their iterator
    states."""
    data_iter, positions = new_iterator(), {}
    checkpoints = RunCheckpoints(str(workdir), OPTIONS)
    done = 0
    for step in steps:
        for _ in range(step - done):
            next(data_iter)
        done = step
        checkpoints.save(step, state_at(step), data_iter, CONFIG)
        positions[step] = data_iter.get_state()
    checkpoints.close()
    return positions


def restore(workdir: Path):
    """(step, state, iterator state) of the newest usable checkpoint."""
    data_iter = new_iterator()
    checkpoints = RunCheckpoints(str(workdir), OPTIONS)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state_at(0))
    try:
        step, state = checkpoints.restore_latest(abstract, data_iter)
    finally:
        checkpoints.close()
    return step, jax.tree.map(np.asarray, state), data_iter.get_state()


def assert_restored(workdir: Path, positions: dict, step: int) -> None:
    got_step, state, position = restore(workdir)
    assert got_step == step
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_at(step)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert position == positions[step]


def files_of(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file())


def largest_data_file(step_dir: Path) -> Path:
    data = [p for p in files_of(step_dir / "state") if "METADATA" not in p.name.upper()]
    return max(data, key=lambda p: p.stat().st_size)


def test_an_intact_run_restores_its_latest_step(tmp_path):
    positions = write_run(tmp_path)
    assert_restored(tmp_path, positions, 4)


def test_a_truncated_data_file_falls_back_to_the_previous_step(tmp_path, caplog):
    positions = write_run(tmp_path)
    victim = largest_data_file(tmp_path / "checkpoints" / "4")
    size = victim.stat().st_size
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    assert_restored(tmp_path, positions, 2)


def test_4_kib_of_random_bytes_in_a_data_file_falls_back(tmp_path):
    positions = write_run(tmp_path)
    victim = largest_data_file(tmp_path / "checkpoints" / "4")
    size = victim.stat().st_size
    assert size > 8192, size
    with open(victim, "r+b") as f:
        f.seek(size // 2 - 2048)
        f.write(np.random.default_rng(1).bytes(4096))
    assert_restored(tmp_path, positions, 2)


def test_deleting_any_metadata_file_never_restores_wrong_values(tmp_path):
    """Each metadata file of step 4 deleted in turn: the restore is step 4 exactly (orbax did
    not need it) or falls back to step 2; never other values, never a traceback."""
    positions = write_run(tmp_path / "template")
    template = tmp_path / "template" / "checkpoints" / "4"
    metadata = [
        p.relative_to(template)
        for p in files_of(template)
        if "metadata" in p.name.lower() or p.name.startswith("manifest")
    ]
    assert len(metadata) >= 4, metadata
    outcomes = {}
    for i, rel in enumerate(metadata):
        run = tmp_path / f"run{i}"
        os.system(f"cp -r {tmp_path / 'template'} {run}")
        (run / "checkpoints" / "4" / rel).unlink()
        step = restore(run)[0]
        assert_restored(run, positions, step)
        outcomes[str(rel)] = step
    assert 2 in outcomes.values(), outcomes  # some deletions must be detected


def test_a_corrupt_iterator_state_falls_back(tmp_path):
    positions = write_run(tmp_path)
    iterator_file = tmp_path / "checkpoints" / "4" / "data_iter" / "metadata"  # the JSON
    assert json.loads(iterator_file.read_text())["state"]
    iterator_file.write_text('{"state": {"next_index": ')
    assert_restored(tmp_path, positions, 2)


def test_no_usable_step_stops_with_one_line(tmp_path):
    write_run(tmp_path)
    for step in (2, 4):
        victim = largest_data_file(tmp_path / "checkpoints" / str(step))
        with open(victim, "r+b") as f:
            f.truncate(16)
    with pytest.raises(CheckpointDamagedError) as error:
        restore(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "step 4:" in message and "step 2:" in message
    assert "not starting over an existing run" in message


def test_max_to_keep_is_exact_with_async_saves(tmp_path):
    options = ml_collections.ConfigDict(dict(max_to_keep=3, async_save=True))
    checkpoints = RunCheckpoints(str(tmp_path), options)
    for step in range(1, 7):
        checkpoints.save(step, state_at(step), None, CONFIG)
    checkpoints.close()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "5", "6"]
    assert json.loads((tmp_path / "checkpoints" / "6" / "config" / "metadata").read_text())
