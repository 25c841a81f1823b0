"""Batches of chat-format dialogues and preference pairs, read from shards built by
`data/build_chat.py` (sample key `json`).

SFT sample json: {"messages": [{"role", "content"}, …], "task": str}
DPO sample json: {"prompt": [messages…], "chosen": str, "rejected": str, "task": str}

Both batchers read through `data.shards.ShardReader` (one slot per rank) and keep no buffer, so
the reader's state_dict *is* the exact position. Rows are right-padded to the longest row in the
batch; targets are -100 wherever no loss applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

IGNORE = -100


def decode_json(sample: dict[str, Any]) -> dict[str, Any]:
    if "json" not in sample:
        raise KeyError("json")
    return json.loads(sample["json"])


def _reader(shards: Sequence[Path], *, rank: int, world_size: int, seed: int, shuffle: bool = True,
            epochs: int | None = None):
    from data.shards import ShardReader

    return ShardReader(shards, slot=rank, num_slots=world_size, seed=seed, shuffle=shuffle,
                       epochs=epochs, decode=decode_json, required=("json",))


def pad_rows(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Tensor]:
    """(tokens, targets) pairs of equal per-row length → {"tokens": [B, L], "targets": [B, L-1]}."""
    width = max(len(t) for t, _ in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width - 1), IGNORE, dtype=torch.long)
    for i, (t, y) in enumerate(rows):
        tokens[i, :len(t)] = torch.tensor(t)
        targets[i, :len(y)] = torch.tensor(y)
    return {"tokens": tokens, "targets": targets}


def group_documents(lengths: Sequence[int], max_docs: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `max_docs` documents: of the first-fit-
    decreasing packings at every row capacity from the longest document up, the one with the
    fewest token slots (rows × longest row), since a batch is padded to its longest row."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best: tuple[int, list[list[int]]] | None = None
    for capacity in range(lengths[order[0]], min(sum(lengths), max_docs * lengths[order[0]]) + 1):
        rows: list[list[int]] = []
        fill: list[int] = []
        for i in order:
            r = next((r for r, f in enumerate(fill) if f + lengths[i] <= capacity and len(rows[r]) < max_docs), None)
            if r is None:
                rows.append([])
                fill.append(0)
                r = len(rows) - 1
            rows[r].append(i)
            fill[r] += lengths[i]
        slots = len(rows) * max(fill)
        if best is None or slots < best[0]:
            best = (slots, rows)
    return best[1]


def pack_rows(rows: list[tuple[list[int], list[int]]], groups: list[list[int]], pad_id: int) -> dict[str, Tensor]:
    """(tokens, targets) pairs as `pad_rows` makes them, concatenated per group of `groups` (e.g.
    `group_documents`) → {"tokens": [R, L], "targets": [R, L-1], "doc_ids": [R, L]}.

    Each pair is a document of its own (`doc_ids` 0, 1, … along a row, -1 on padding), so the
    model masks attention between them and restarts positions (`text.model.Transformer`); the
    target of a document's last token, which would be the next document's first, is IGNORE."""
    packed, doc_ids = [], []
    for group in groups:
        tokens = [t for i in group for t in rows[i][0]]
        targets = [y for i in group for y in rows[i][1] + [IGNORE]][:-1]
        packed.append((tokens, targets))
        doc_ids.append([d for d, i in enumerate(group) for _ in rows[i][0]])
    batch = pad_rows(packed, pad_id)
    batch["doc_ids"] = torch.full_like(batch["tokens"], -1)
    for r, ids in enumerate(doc_ids):
        batch["doc_ids"][r, :len(ids)] = torch.tensor(ids)
    return batch


class DialogueBatcher:
    """SFT batches: {"tokens": [B, L], "targets": [B, L-1]}; targets are the next token where the
    chat format marks it trainable (assistant content and its <|eot_id|>), else -100."""

    def __init__(self, shards: Sequence[Path], tokenizer, *, seq_len: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, mask_prompt: bool = True, epochs: int | None = None,
                 shuffle: bool = True):
        from text.chat_format import ChatFormat

        self.chat = ChatFormat(tokenizer)
        self.pad_id = tokenizer.pad_id
        self.seq_len, self.batch_size, self.mask_prompt = seq_len, batch_size, mask_prompt
        self.reader = _reader(shards, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle, epochs=epochs)

    def encode(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        tokens, mask = self.chat.encode_for_training(messages)
        tokens, mask = tokens[: self.seq_len + 1], mask[: self.seq_len + 1]
        if not self.mask_prompt:
            mask = [True] * len(mask)
        targets = [t if m else IGNORE for t, m in zip(tokens[1:], mask[1:])]
        return tokens, targets

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            rows = []
            for sample in self.reader:
                rows.append(self.encode(sample["messages"]))
                if len(rows) == self.batch_size:
                    break
            if not rows:
                return
            yield pad_rows(rows, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reader.load_state_dict(state)


class PreferenceBatcher:
    """DPO batches: rows 0..B-1 are prompt+chosen, rows B..2B-1 prompt+rejected; targets cover the
    response only, and with mask_special its special tokens (header/termination) are -100 too."""

    def __init__(self, shards: Sequence[Path], tokenizer, *, seq_len: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, mask_special: bool = True, epochs: int | None = None,
                 shuffle: bool = True):
        from text.chat_format import ChatFormat

        self.tokenizer, self.chat = tokenizer, ChatFormat(tokenizer)
        self.pad_id = tokenizer.pad_id
        self.seq_len, self.batch_size, self.mask_special = seq_len, batch_size, mask_special
        self.reader = _reader(shards, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle, epochs=epochs)

    def encode(self, prompt: list[dict], response: str) -> tuple[list[int], list[int]]:
        head = self.chat.encode_dialog(prompt, add_generation_prompt=True)
        reply = self.tokenizer.encode(response.strip()) + [self.tokenizer.eot_id]
        tokens = (head + reply)[: self.seq_len + 1]
        trainable = [False] * len(head) + [not (self.mask_special and self.tokenizer.is_special(t)) for t in reply]
        targets = [t if m else IGNORE for t, m in zip(tokens[1:], trainable[1:len(tokens)])]
        return tokens, targets

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            chosen, rejected = [], []
            for sample in self.reader:
                chosen.append(self.encode(sample["prompt"], sample["chosen"]))
                rejected.append(self.encode(sample["prompt"], sample["rejected"]))
                if len(chosen) == self.batch_size:
                    break
            if not chosen:
                return
            yield pad_rows(chosen + rejected, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reader.load_state_dict(state)


__all__ = ["DialogueBatcher", "PreferenceBatcher", "pad_rows", "group_documents", "pack_rows", "decode_json", "IGNORE"]
