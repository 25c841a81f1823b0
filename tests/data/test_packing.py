"""Packed text batches: layout, document ids, rank/worker split, exact resume, bad input."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from data.packing import PackedTextLoader
from data.shards import write_shards


def _segments(batch: dict) -> list[list[int]]:
    """Document segments of every row, in order (padding dropped)."""
    out = []
    for tokens, ids in zip(batch["tokens"].tolist(), batch["doc_ids"].tolist()):
        for _, group in itertools.groupby(zip(tokens, ids), key=lambda p: p[1]):
            group = list(group)
            if group[0][1] >= 0:
                out.append([t for t, _ in group])
    return out


def test_batches_have_the_documented_layout(text_shards, byte_tokenizer) -> None:
    shards, docs = text_shards
    loader = PackedTextLoader(shards, byte_tokenizer, seq_len=64, batch_size=3, epochs=1, shuffle=False)
    batches = list(loader)
    assert batches and all(b["tokens"].shape == (3, 65) and b["tokens"].dtype == torch.long for b in batches)
    assert all(b["doc_ids"].shape == (3, 65) for b in batches)
    stream = [t for b in batches for t in b["tokens"].flatten().tolist()]
    expected = [t for d in docs for t in byte_tokenizer.encode(d)]  # unshuffled: shards in order
    assert stream == expected[:len(stream)] and len(expected) - len(stream) < 3 * 65
    for b in batches:  # ids restart at 0 per row, rise by one at every BOS after the row start
        for tokens, ids in zip(b["tokens"].tolist(), b["doc_ids"].tolist()):
            assert ids[0] == 0 and all(0 <= ids[i + 1] - ids[i] <= 1 for i in range(64))
            starts = [i for i in range(1, 65) if ids[i] != ids[i - 1]]
            assert starts == [i for i in range(1, 65) if tokens[i] == byte_tokenizer.bos_id]


def test_split_docs_false_starts_each_document_in_a_row_that_holds_it(text_shards, byte_tokenizer) -> None:
    shards, _ = text_shards
    loader = PackedTextLoader(shards, byte_tokenizer, seq_len=128, batch_size=4, epochs=1, split_docs=False)
    bos, eos = byte_tokenizer.bos_id, byte_tokenizer.eos_id
    for batch in loader:
        for row in range(4):
            segments = _segments({k: v[row:row + 1] for k, v in batch.items()})
            for i, seg in enumerate(segments):
                whole = seg[0] == bos and seg[-1] == eos
                # only a document longer than a row is cut: it fills rows from their start
                assert whole or (i == 0 and (seg[-1] == eos or len(seg) == 129)), seg
        pad = batch["doc_ids"] == -1
        assert (batch["tokens"][pad] == byte_tokenizer.pad_id).all()


def test_ranks_and_workers_read_disjoint_documents(tmp_path: Path, byte_tokenizer, make_docs) -> None:
    docs = make_docs(64, seed=1)
    write_shards(({"__key__": f"d{i}", "txt": t} for i, t in enumerate(docs)), tmp_path, "train", max_count=4)
    shards = sorted(tmp_path.glob("train-*.tar"))
    seen = []
    for rank in range(2):
        loader = PackedTextLoader(shards, byte_tokenizer, seq_len=32, batch_size=2, rank=rank, world_size=2,
                                  num_workers=2, epochs=1, split_docs=False)
        texts = set()
        for batch in loader:
            for seg in _segments(batch):
                if seg[0] == byte_tokenizer.bos_id:
                    texts.add(bytes(t for t in seg[1:] if t < 256)[:6])
        seen.append(texts)
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def _run(shards, tokenizer, *, rank: int, world: int, workers: int, n: int, state: dict | None = None):
    loader = PackedTextLoader(shards, tokenizer, seq_len=48, batch_size=2, rank=rank, world_size=world,
                              num_workers=workers, seed=7)
    if state is not None:
        loader.load_state_dict(state)
    batches = [b for _, b in zip(range(n), loader)]
    return batches, json.loads(json.dumps(loader.state_dict()))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact_with_two_ranks(text_shards, byte_tokenizer, workers: int) -> None:
    shards, _ = text_shards
    for rank in range(2):
        full, _ = _run(shards, byte_tokenizer, rank=rank, world=2, workers=workers, n=25)  # crosses epochs
        head, state = _run(shards, byte_tokenizer, rank=rank, world=2, workers=workers, n=11)
        tail, _ = _run(shards, byte_tokenizer, rank=rank, world=2, workers=workers, n=14, state=state)
        assert len(full) == 25
        for a, b in zip(full, head + tail):
            assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["doc_ids"], b["doc_ids"])


def test_resume_is_exact_with_the_real_tokenizer(text_shards, tiny_tokenizer) -> None:
    shards, _ = text_shards
    full, _ = _run(shards, tiny_tokenizer, rank=0, world=1, workers=2, n=12)
    head, state = _run(shards, tiny_tokenizer, rank=0, world=1, workers=2, n=5)
    tail, _ = _run(shards, tiny_tokenizer, rank=0, world=1, workers=2, n=7, state=state)
    assert all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(full, head + tail))


def test_state_for_another_layout_is_refused(text_shards, byte_tokenizer) -> None:
    shards, _ = text_shards
    _, state = _run(shards, byte_tokenizer, rank=0, world=1, workers=0, n=2)
    loader = PackedTextLoader(shards, byte_tokenizer, seq_len=48, batch_size=2, num_workers=2, seed=7)
    with pytest.raises(ValueError, match="workers"):
        loader.load_state_dict(state)


def test_bad_samples_are_skipped_and_counted_through_workers(tmp_path: Path, byte_tokenizer) -> None:
    write_shards([{"__key__": f"g{i}", "txt": f"good document {i} " * 5} for i in range(12)], tmp_path, "a")
    write_shards([{"__key__": "latin", "txt": "caf\xe9 au lait".encode("latin-1")},
                  {"__key__": "nokey", "json": {"x": 1}}], tmp_path, "b")
    shards = sorted(tmp_path.glob("*.tar"))
    loader = PackedTextLoader(shards, byte_tokenizer, seq_len=16, batch_size=1, num_workers=2, epochs=1)
    assert len(list(loader)) > 0
    assert loader.skipped == {"not_utf8": 1, "missing_key": 1}
    strict = PackedTextLoader(shards, byte_tokenizer, seq_len=16, batch_size=1, epochs=1, strict=True)
    with pytest.raises(ValueError, match="b-000000.tar"):
        list(strict)
