"""Batches from shards, split by rank and DataLoader worker, with an exact-resume state.

A `ResumableLoader` runs one `ShardReader` per (rank, worker) slot — slot = rank·W + worker of
world_size·W — and a *batcher* turns that reader's samples into batches. Each batch leaves its
worker together with the worker's state right after it (reader position + batcher state), so the
main process always knows the state behind the batches it has handed out, never that of batches
still prefetched. `torch.utils.data.DataLoader` takes batches from workers round-robin; on resume
the workers are re-numbered so that the worker due next is the first one asked. Together these
make a resumed run see exactly the batches an uninterrupted one would.

Batchers (`Batcher`): `__call__(reader, state) -> Iterator[(batch, state)]`, where `state` is a
dict with at least `"reader"` (a `ShardReader.state_dict()` to resume from); `CollateBatcher`
groups decoded samples (images, audio, …) with a collate function; `data.packing` packs text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from data.shards import Decoder, ShardReader, decode_raw

__all__ = ["Batcher", "CollateBatcher", "ResumableLoader"]


class Batcher(Protocol):
    def __call__(self, reader: ShardReader, state: dict | None) -> Iterator[tuple[Any, dict]]: ...


class CollateBatcher:
    """`batch_size` decoded samples → `collate(samples)`; a last partial batch is dropped."""

    def __init__(self, batch_size: int, collate: Callable[[list[dict]], Any] = list) -> None:
        self.batch_size, self.collate = batch_size, collate

    def __call__(self, reader: ShardReader, state: dict | None) -> Iterator[tuple[Any, dict]]:
        if state is not None:
            reader.load_state_dict(state["reader"])
        while True:
            samples = []
            for sample in reader:
                samples.append(sample)
                if len(samples) == self.batch_size:
                    break
            if len(samples) < self.batch_size:
                return
            yield self.collate(samples), {"reader": reader.state_dict()}


class _SlotStream(IterableDataset):
    """What each worker runs: its reader + batcher, tagging batches with (worker, state, skips)."""

    def __init__(self, loader: "ResumableLoader", states: dict[int, dict], shift: int) -> None:
        self.loader, self.states, self.shift = loader, states, shift

    def __iter__(self) -> Iterator[dict]:
        loader = self.loader
        info = get_worker_info()
        workers = max(loader.num_workers, 1)
        worker = ((info.id if info is not None else 0) + self.shift) % workers
        reader = ShardReader(loader.shards, slot=loader.rank * workers + worker, num_slots=loader.world_size * workers,
                             seed=loader.seed, shuffle=loader.shuffle, epochs=loader.epochs, decode=loader.decode,
                             required=loader.required, strict=loader.strict)
        state = self.states.get(worker)
        for batch, state in loader.batcher(reader, state):
            yield {"batch": batch, "worker": worker, "state": state, "skipped": dict(reader.skipped)}
        # end of data: report the final skip counts without a batch
        yield {"batch": None, "worker": worker, "state": state, "skipped": dict(reader.skipped)}


class ResumableLoader:
    """Iterate batches of `batcher` over `shards` for one `rank` of `world_size`, with
    `num_workers` DataLoader worker processes (0: in this process).

    `state_dict()` describes the position after the last batch this object yielded;
    `load_state_dict()` on a fresh loader with the same arguments continues from there.
    `skipped` counts bad samples per reason (truncated_shard, corrupt, missing_key, not_utf8, …).
    """

    def __init__(self, shards: Sequence[str | Path], batcher: Batcher, *, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, seed: int = 0, shuffle: bool = True, epochs: int | None = None,
                 decode: Decoder = decode_raw, required: Sequence[str] = (), strict: bool = False,
                 prefetch_factor: int = 2) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.shards = [str(s) for s in shards]
        self.batcher = batcher
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.seed, self.shuffle, self.epochs = seed, shuffle, epochs
        self.decode, self.required, self.strict = decode, tuple(required), strict
        self.prefetch_factor = prefetch_factor
        self._states: dict[int, dict] = {}
        self._skipped: dict[int, dict] = {}
        self._next_worker = 0

    @property
    def skipped(self) -> Counter:
        total: Counter = Counter()
        for counts in self._skipped.values():
            total.update(counts)
        return total

    def __iter__(self) -> Iterator[Any]:
        stream = _SlotStream(self, dict(self._states), self._next_worker)
        if self.num_workers == 0:
            items = iter(stream)
        else:
            items = iter(DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                                    prefetch_factor=self.prefetch_factor, persistent_workers=False))
        workers = max(self.num_workers, 1)
        for item in items:
            worker = item["worker"]
            self._skipped[worker] = item["skipped"]
            if item["batch"] is None:
                continue
            if item["state"] is not None:
                self._states[worker] = item["state"]
            self._next_worker = (worker + 1) % workers
            yield item["batch"]

    def state_dict(self) -> dict:
        return {"version": 1, "rank": self.rank, "world_size": self.world_size, "num_workers": self.num_workers,
                "seed": self.seed, "next_worker": self._next_worker,
                "workers": {str(w): s for w, s in sorted(self._states.items())},
                "skipped": {str(w): s for w, s in sorted(self._skipped.items())}}

    def load_state_dict(self, state: dict) -> None:
        mine = (self.rank, self.world_size, self.num_workers, self.seed)
        theirs = (state["rank"], state["world_size"], state["num_workers"], state["seed"])
        if mine != theirs:
            raise ValueError(f"data state is for rank/world/workers/seed {theirs}, this loader has {mine}")
        self._states = {int(w): s for w, s in state["workers"].items()}
        self._skipped = {int(w): s for w, s in state.get("skipped", {}).items()}
        self._next_worker = state["next_worker"]

