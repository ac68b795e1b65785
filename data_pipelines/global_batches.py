"""Global batches that do not depend on the number of processes.

The clip stream is one global sequence: element g is a function of the seeds and g alone.
Global batch n is elements [start + nB, start + (n+1)B), and process p of P takes its rows
[p*b, (p+1)*b) of it, b = B/P. So one process with batch B and two with batch B/2 train on the
same clips, and the iterator's state (`{"next_global_clip": start + nB}`) is the same JSON on
every process: a run saved by two processes resumes in one, or on another mesh.

A clip whose frames turn out undecodable is replaced in place (its element reads the next
videos of the stream, with generators of their own), so a bad video never shifts the rows of
any process and every process still agrees on the global position.
"""

from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

STATE_KEY = "next_global_clip"
# A clip is retried on this many following videos before the run stops: more than that in a
# row means the dataset, not one file, is broken.
MAX_REPLACEMENTS = 16


def element_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """Element `index`'s generator; attempt 0 is the one grain's `random_map` gives that index
    (grain's RngPool: Philox(seed), counter [0, 0, op_seed, index]), so one process draws the
    clips it drew before global batches existed."""
    bits = np.random.Philox(seed)
    state = bits.state
    state["state"]["counter"] = np.array([0, 0, attempt, index], dtype=np.uint64)
    bits.state = state
    return np.random.Generator(bits)


class GlobalClips(grain.MapDataset):
    """Element g: one clip (`read(record, rng) -> clip | None`) of the record at position g."""

    def __init__(self, records: grain.MapDataset, read: Callable, seed: int):
        super().__init__(records)
        self._read = read
        self._seed = seed

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        for attempt in range(MAX_REPLACEMENTS + 1):
            record = self._parent[(index + attempt) % len(self)]
            clip = self._read(record, element_rng(self._seed, index, attempt))
            if clip is not None:
                return clip
        raise RuntimeError(
            f"data: {MAX_REPLACEMENTS + 1} videos in a row gave no readable clip (stream "
            f"position {index}); check the dataset with data.verify_files=True"
        )


class ProcessRows(grain.MapDataset):
    """This process's rows of every global batch from stream position `start` on."""

    def __init__(self, clips: grain.MapDataset, *, start: int, global_batch: int, rows: int,
                 process: int):  # fmt: skip
        super().__init__(clips)
        self._start, self._global, self._rows, self._process = start, global_batch, rows, process

    def __len__(self) -> int:
        return max(0, (len(self._parent) - self._start) // self._global) * self._rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(index, self._rows)
        return self._parent[self._start + batch * self._global + self._process * self._rows + row]


def read_state(state: Mapping[str, Any]) -> int:
    """The global stream position in a saved iterator state; one line if it is not one."""
    position = state.get(STATE_KEY) if isinstance(state, Mapping) else None
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(
            f"data iterator state: expected {{{STATE_KEY!r}: an integer >= 0}}, got {found}"
        )
    return position


class GlobalBatchIterator(grain.DatasetIterator):
    """Iterates this process's slices of the global batches; its state is the global position.

    `make_batches(start)` builds the process's batched pipeline from stream position `start`;
    `set_state` rebuilds it there (cheap: nothing is read before the next batch)."""

    def __init__(self, make_batches: Callable[[int], grain.IterDataset], global_batch: int):
        super().__init__()
        self._make_batches = make_batches
        self._global_batch = global_batch
        self._position = 0
        self._batches = None

    def _started(self):
        if self._batches is None:
            self._batches = iter(self._make_batches(self._position))
        return self._batches

    def __next__(self):
        batch = next(self._started())
        self._position += self._global_batch
        return batch

    def get_state(self) -> dict[str, int]:
        return {STATE_KEY: self._position}

    def set_state(self, state: Mapping[str, Any]) -> None:
        position = read_state(state)
        self.close()
        self._closed = False
        self._position = position

    def start_prefetch(self) -> None:
        self._started().start_prefetch()

    def close(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        self._closed = True


class GlobalBatchDataset(grain.IterDataset):
    """The iterable `build_clip_dataset` returns: each `iter()` starts at stream position 0."""

    def __init__(self, make_batches: Callable[[int], grain.IterDataset], global_batch: int):
        super().__init__()
        self._make_batches = make_batches
        self._global_batch = global_batch

    def __iter__(self) -> GlobalBatchIterator:
        return GlobalBatchIterator(self._make_batches, self._global_batch)

    def __str__(self) -> str:
        return f"GlobalBatchDataset(global_batch={self._global_batch})"
