"""Packed-text loaders for the late pretraining phases: documents filtered by a predicate (long
chapters for context extension, one source for annealing) and a row-wise mixture of two loaders
(up-sampling a high-quality source, llama3-spec §1.5). Both resume exactly.

    long = filtered_loader(shards, tokenizer, keep=lambda s: len(s["txt"]) >= 4000, seq_len=4096, batch_size=1)
    mix = MixtureLoader(default, upsampled, upsampled_rows=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

Predicate = Callable[[dict], bool]


class FilteredReader:
    """A shard reader that skips samples failing `keep`. Its state is the inner reader's: the
    skipped samples lie after it, so a resume skips them again (exact)."""

    def __init__(self, reader, keep: Predicate):
        self.reader, self.keep = reader, keep

    def __iter__(self) -> "FilteredReader":
        return self

    def __next__(self) -> dict:
        while True:
            sample = next(self.reader)
            if self.keep(sample):
                return sample

    def state_dict(self) -> dict:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.reader.load_state_dict(state)


def filtered_loader(shards: Sequence[Path], tokenizer, *, keep: Predicate, seq_len: int, batch_size: int,
                    seed: int = 0, rank: int = 0, world_size: int = 1):
    """A `PackedTextLoader` over the documents that pass `keep` (whole documents packed, split
    across rows when longer than one)."""
    from data.packing import PackedTextLoader

    loader = PackedTextLoader(shards, tokenizer, seq_len=seq_len, batch_size=batch_size, rank=rank,
                              world_size=world_size, seed=seed)
    inner = loader._loader.batcher
    loader._loader.batcher = lambda reader, state: inner(FilteredReader(reader, keep), state)
    return loader


def source_is(name: str) -> Predicate:
    """Keep documents whose json metadata names `name` as their source."""
    return lambda sample: (sample.get("json") or {}).get("source") == name


def at_least_chars(n: int) -> Predicate:
    return lambda sample: len(sample["txt"]) >= n


class MixtureLoader:
    """Rows of `main` and `extra` stacked into one batch: `extra` contributes its whole batch
    (size `upsampled_rows`) to every step, so its share of rows is fixed and exact."""

    def __init__(self, main, extra):
        self.main, self.extra = main, extra

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        a, b = iter(self.main), iter(self.extra)
        while True:
            try:
                x, y = next(a), next(b)
            except StopIteration:
                return
            yield {k: torch.cat([x[k], y[k]]) for k in x}

    def state_dict(self) -> dict:
        return {"main": self.main.state_dict(), "extra": self.extra.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["main"])
        self.extra.load_state_dict(state["extra"])


__all__ = ["FilteredReader", "filtered_loader", "source_is", "at_least_chars", "MixtureLoader"]
