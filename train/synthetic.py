"""Deterministic synthetic packed-text batches for loop tests and benchmarks.

Each row packs a few "documents", each an arithmetic progression of token ids (random start and
stride), so the loss falls quickly and a model can be checked for learning. Batch `i` is a pure
function of (seed, i): the state is one integer counted in *global* batches, so a checkpoint
written by N ranks resumes exactly in M ranks, and rank r of N sees rows [r·B, (r+1)·B) of the
global batch that one process with batch N·B would see.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor


class SyntheticTextLoader:
    """{"tokens": [B, T+1], "doc_ids": [B, T+1]} int64 batches, forever."""

    def __init__(self, *, vocab_size: int, seq_len: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, docs_per_row: int = 2):
        self.vocab_size, self.seq_len, self.batch_size = vocab_size, seq_len, batch_size
        self.rank, self.world_size, self.seed, self.docs_per_row = rank, world_size, seed, docs_per_row
        self.index = 0

    def global_batch(self, index: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        rows, length = self.batch_size * self.world_size, self.seq_len + 1
        start = torch.randint(0, self.vocab_size, (rows, 1), generator=g)
        stride = torch.randint(1, 5, (rows, 1), generator=g)
        cuts = torch.randint(1, length, (rows, self.docs_per_row - 1), generator=g)
        pos = torch.arange(length).expand(rows, length)
        doc_ids = (pos[:, :, None] >= cuts[:, None, :]).sum(-1)
        tokens = (start + doc_ids * 7 + stride * pos) % self.vocab_size
        return {"tokens": tokens, "doc_ids": doc_ids}

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            batch = self.global_batch(self.index)
            self.index += 1
            lo = self.rank * self.batch_size
            yield {k: v[lo:lo + self.batch_size] for k, v in batch.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"synthetic loader state has seed {state['seed']}, not {self.seed}")
        self.index = int(state["index"])


__all__ = ["SyntheticTextLoader"]
