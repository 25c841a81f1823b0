"""The generic resumable loader (what image/audio/video readers use): decode hook, collate batches,
skip-and-count through workers, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.loader import CollateBatcher, ResumableLoader
from data.shards import write_shards


def _decode(sample: dict) -> dict:
    if sample["bin"].startswith(b"BAD"):
        raise ValueError("cannot decode")
    return {"key": sample["__key__"], "value": int(sample["bin"])}


def _keys(batch: list[dict]) -> list[str]:
    return [s["key"] for s in batch]


@pytest.fixture
def shards(tmp_path: Path) -> list[Path]:
    samples = [{"__key__": f"s{i:03d}", "bin": (b"BAD" if i % 17 == 0 else str(i).encode())} for i in range(120)]
    infos = write_shards(samples, tmp_path, "train", max_count=15)
    return [tmp_path / i["path"] for i in infos]


def _loader(shards, workers: int, rank: int = 0, world: int = 1) -> ResumableLoader:
    return ResumableLoader(shards, CollateBatcher(4, _keys), rank=rank, world_size=world, num_workers=workers,
                           seed=3, decode=_decode, required=("bin",))


@pytest.mark.parametrize("workers", [0, 2])
def test_collate_loader_resumes_exactly_and_counts_bad_samples(shards, workers: int) -> None:
    for rank in range(2):
        full = [b for _, b in zip(range(30), _loader(shards, workers, rank, 2))]
        first = _loader(shards, workers, rank, 2)
        head = [b for _, b in zip(range(9), first)]
        state = json.loads(json.dumps(first.state_dict()))
        second = _loader(shards, workers, rank, 2)
        second.load_state_dict(state)
        tail = [b for _, b in zip(range(21), second)]
        assert head + tail == full
        assert second.skipped["corrupt"] > 0 and set(second.skipped) == {"corrupt"}


def test_one_epoch_over_all_ranks_sees_every_good_sample_once(shards) -> None:
    seen = []
    for rank in range(2):
        loader = ResumableLoader(shards, CollateBatcher(1, _keys), rank=rank, world_size=2, num_workers=2, epochs=1,
                                 decode=_decode)
        seen += [k for batch in loader for k in batch]
    assert sorted(seen) == sorted(f"s{i:03d}" for i in range(120) if i % 17)
