"""Shared fixtures for the data tests: a byte tokenizer and small text shard sets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from data.shards import write_shards


class ByteTokenizer:
    """Bytes as ids 0–255, BOS 256, EOS 257, pad 258: enough to test packing without a BPE model."""

    bos_id, eos_id, pad_id = 256, 257, 258

    def encode(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        return [self.bos_id] * bos + list(text.encode("utf-8")) + [self.eos_id] * eos


@pytest.fixture
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()


def _make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the whale sea ship captain harpoon white deep voyage sailor wind storm".split()
    return [f"doc {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for i in range(n)]


@pytest.fixture
def make_docs():
    """`make_docs(n, seed)`: n short distinct English-like documents."""
    return _make_docs


@pytest.fixture
def text_shards(tmp_path: Path) -> tuple[list[Path], list[str]]:
    """40 documents in 5 shards of 8."""
    docs = _make_docs(40)
    infos = write_shards(({"__key__": f"d{i:03d}", "txt": t} for i, t in enumerate(docs)), tmp_path, "train",
                         max_count=8)
    return [tmp_path / info["path"] for info in infos], docs
