"""Packed text batches for LM pre-training, with exact resume (docs/internals.md "Text batches").

Each document is tokenized with BOS and EOS and packed greedily into rows of `seq_len + 1`
tokens; a row that a document overfills continues it in the next row (`split_docs=True`), or the
document starts afresh in the next row and the rest of the row is padding (`split_docs=False`;
documents longer than a row are still cut into rows). `doc_ids` numbers the document segments of
a row 0, 1, 2, … — a new id at every document start — so the model restarts positions and masks
attention across documents (Llama 3 §3.4.1 document mask); padding has `doc_ids == -1` and
`tokens == pad_id` and must get target −100.

The state saved with each batch is the reader position *before* the document in progress plus
how many of its tokens are used, so resuming re-reads and re-tokenizes that one document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch

from data.loader import ResumableLoader
from data.shards import ShardReader, decode_text

__all__ = ["PackedTextLoader", "PackBatcher", "TextEncoder"]


class TextEncoder(Protocol):
    def encode(self, text: str, bos: bool = ..., eos: bool = ...) -> list[int]: ...


class PackBatcher:
    """`batch_size` rows of `seq_len + 1` packed tokens from a reader of decoded text samples."""

    def __init__(self, tokenizer: TextEncoder, *, seq_len: int, batch_size: int, split_docs: bool = True,
                 pad_id: int = 0) -> None:
        self.tokenizer, self.seq_len, self.batch_size = tokenizer, seq_len, batch_size
        self.split_docs, self.pad_id = split_docs, pad_id

    def __call__(self, reader: ShardReader, state: dict | None) -> Iterator[tuple[dict, dict]]:
        width = self.seq_len + 1
        doc_state, tokens, pos = reader.state_dict(), torch.empty(0, dtype=torch.long), 0

        def next_document() -> bool:
            nonlocal doc_state, tokens, pos
            doc_state = reader.state_dict()
            sample = next(reader, None)
            if sample is None:
                return False
            tokens = torch.tensor(self.tokenizer.encode(sample["txt"], bos=True, eos=True), dtype=torch.long)
            pos = 0
            return True

        if state is not None:
            reader.load_state_dict(state["reader"])
            if not next_document():
                return
            pos = state["token_offset"]
        while True:
            batch_tokens = torch.full((self.batch_size, width), self.pad_id, dtype=torch.long)
            batch_docs = torch.full((self.batch_size, width), -1, dtype=torch.long)
            for row in range(self.batch_size):
                fill, doc_id = 0, 0
                while fill < width:
                    if pos >= len(tokens) and not next_document():
                        return  # end of data: the partial batch is dropped
                    take = min(len(tokens) - pos, width - fill)
                    if not self.split_docs and pos == 0 and fill > 0 and take < len(tokens):
                        break  # the whole document fits in a fresh row: pad this one
                    batch_tokens[row, fill:fill + take] = tokens[pos:pos + take]
                    batch_docs[row, fill:fill + take] = doc_id
                    doc_id, fill, pos = doc_id + 1, fill + take, pos + take
            yield {"tokens": batch_tokens, "doc_ids": batch_docs}, {"reader": doc_state, "token_offset": pos}


class PackedTextLoader:
    """Batches `{"tokens": LongTensor[B, T+1], "doc_ids": LongTensor[B, T+1]}` from text shards.

    Shards are split by `rank` of `world_size` and by DataLoader worker (`num_workers`, 0: in
    process); order is fixed by `seed` and the epoch; `epochs=None` cycles forever. Bad samples are
    skipped and counted in `skipped` (`strict=True`: raise). `state_dict()`/`load_state_dict()`
    resume exactly (same shards, seed, rank, world size and workers).
    """

    def __init__(self, shards: Sequence[str | Path], tokenizer: TextEncoder, *, seq_len: int, batch_size: int,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, seed: int = 0, split_docs: bool = True,
                 shuffle: bool = True, epochs: int | None = None, strict: bool = False,
                 pad_id: int | None = None) -> None:
        pad = pad_id if pad_id is not None else int(getattr(tokenizer, "pad_id", 0) or 0)
        batcher = PackBatcher(tokenizer, seq_len=seq_len, batch_size=batch_size, split_docs=split_docs, pad_id=pad)
        self.seq_len, self.batch_size = seq_len, batch_size
        self._loader = ResumableLoader(shards, batcher, rank=rank, world_size=world_size, num_workers=num_workers,
                                       seed=seed, shuffle=shuffle, epochs=epochs, decode=decode_text,
                                       required=("txt",), strict=strict)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self._loader)

    @property
    def skipped(self) -> Any:
        return self._loader.skipped

    def state_dict(self) -> dict:
        return {"seq_len": self.seq_len, "batch_size": self.batch_size, **self._loader.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if (state["seq_len"], state["batch_size"]) != (self.seq_len, self.batch_size):
            raise ValueError(f"data state is for seq_len {state['seq_len']} batch {state['batch_size']}, "
                             f"this loader has {self.seq_len} / {self.batch_size}")
        self._loader.load_state_dict(state)
