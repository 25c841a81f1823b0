"""Synthetic copy rows in `text-pretrain`, so that a small LM learns in-context copying.

Why: the speech adapter's outputs reach the frozen LM as prompt embeddings (llama3-spec §5.4), so
transcribing is repeating what the prompt holds, and the LM must be able to copy. The tiny LM does
not learn that from its ~2M prose tokens (`herd eval text`: copy_accuracy = its first-pass
accuracy). A copy row is pieces of 8–`span` token ids, each followed by its repeat; only the
repeats are predicted. The curriculum: `warmup_steps` batches of copy rows only, the first
`subset_steps` of them over `subset` ids, then prose with a `fraction` of every batch's rows made
copy rows of their own prose. Use it with `model.tie_embeddings = true` (with untied tables nothing
was copied after 250 steps: the input and output rows would have to be aligned one by one).

The pieces vary in length because a fixed length teaches a shortcut, not copying. Measured on
2026-12-05 with a fresh tied tiny LM (6 × 256, 8K vocabulary), 8 rows of 257 tokens, lr 2e-3,
150 warm-up steps on 256 ids, then 100 on all ids, accuracy on repeats of all-vocabulary spans:

| warm-up pieces | repeats 32 back | repeats 20 back | repeats 4–32 back |
|---|---|---|---|
| 32 tokens, always | 0.911 | 0.000 | 0.032 |
| 4–32 tokens | 0.001 | 0.001 | 0.000 |

- With one length the model learns to predict the token `span` positions back: the loss on the
  256 ids falls to 0.005 by step 150. On prose, the demo LM trained that way (200 warm-up steps,
  then 800 at a fraction of 0.25) scores copy_accuracy 0.194 against 0.114 on the first pass with
  `herd eval text`'s repeats of 17–32 tokens; most of it comes from the 32-token ones.
- With varying lengths the model must find the earlier occurrence of the current token (an
  induction head). None formed in 1,500 warm-up steps (18 minutes here, twice the demo's whole
  text-pretrain): the loss on 256 ids fell from ln 256 = 5.55 to 4.89, about ln 128, what knowing
  which ~128 ids a row holds is worth, and accuracy on the repeats stayed at 0.000.
- So on 2 CPU cores the curriculum does not give the tiny LM copying, and the tiny configs leave
  it off. It is kept for longer runs and larger models.

    loader = CopyCurriculum(prose_loader, ids=tokenizer.bos_id, seq_len=256, batch_size=8,
                            section=config.copy, seed=0)
    batch = next(iter(loader))   # {"tokens", "doc_ids", "predict"} [B, T+1]
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor

from train.stage_configs import CopySection
from train.stages.text_common import IGNORE


def copy_rows(rows: int, length: int, *, ids: int, span: int, generator: torch.Generator) -> dict[str, Tensor]:
    """{"tokens", "doc_ids", "predict"} [rows, length]: pieces of ids drawn from [0, ids), each
    followed by its repeat (see `repeat_spans`)."""
    return repeat_spans(torch.randint(0, ids, (rows, length), generator=generator), span, generator=generator)


def repeat_spans(tokens: Tensor, span: int, *, generator: torch.Generator) -> dict[str, Tensor]:
    """tokens [rows, length] → {"tokens", "doc_ids", "predict"} [rows, length]: each row's tokens cut
    into consecutive pieces of min(8, span)–`span` tokens (lengths drawn from `generator`), each
    piece followed by its repeat; `predict` marks the repeated tokens, the first of each repeat
    excluded (nothing says where a repeat starts)."""
    rows, length = tokens.shape
    out = torch.empty_like(tokens)
    predict = torch.zeros(rows, length, dtype=torch.bool)
    shortest = min(8, span)
    for r in range(rows):
        at = used = 0
        while at < length:
            n = int(torch.randint(shortest, span + 1, (), generator=generator))
            piece = tokens[r, used:used + n]
            used += n
            pair = torch.cat([piece, piece])[:length - at]
            out[r, at:at + len(pair)] = pair
            predict[r, at + n + 1:at + len(pair)] = True
            at += len(pair)
    return {"tokens": out, "doc_ids": torch.zeros_like(out), "predict": predict}


class CopyCurriculum:
    """Wraps a prose loader ({"tokens", "doc_ids"} [B, T+1] batches): copy-row batches for the
    first `warmup_steps`, then prose batches whose last `round(fraction · B)` rows are copy rows.

    Batch `i`'s copy rows are a pure function of (seed, rank, i); `state_dict()` holds i and the
    prose loader's state, so a run resumes exactly.
    """

    def __init__(self, prose, *, ids: int, seq_len: int, batch_size: int, section: CopySection,
                 seed: int = 0, rank: int = 0):
        self.prose, self.ids, self.length, self.batch_size = prose, ids, seq_len + 1, batch_size
        self.section, self.seed, self.rank = section, seed, rank
        self.index = 0

    def _generator(self) -> torch.Generator:
        """Batch `index`'s random stream: a pure function of (seed, index, rank)."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.index) * 4096 + self.rank)

    def _copy(self, rows: int) -> dict[str, Tensor]:
        s = self.section
        ids = s.subset if self.index < s.subset_steps else self.ids
        return copy_rows(rows, self.length, ids=min(ids, self.ids), span=s.span, generator=self._generator())

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        prose: Iterator | None = None
        while True:
            if self.index < self.section.warmup_steps:
                batch = self._copy(self.batch_size)
            else:
                prose = prose or iter(self.prose)
                try:
                    batch = next(prose)
                except StopIteration:
                    return
                batch = self._mix(batch)
            self.index += 1
            yield batch

    def _mix(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch with its last rows made copy rows of their own prose, so that the copying
        is learned on text too, not on random ids only."""
        n = round(self.section.fraction * batch["tokens"].shape[0])
        if not n:
            return batch
        copies = repeat_spans(batch["tokens"][-n:], self.section.span, generator=self._generator())
        tokens = torch.cat([batch["tokens"][:-n], copies["tokens"]])
        if "targets" in batch:  # dialogue batches (text-sft): targets [B, T], IGNORE where unsupervised
            repeats = copies["tokens"][:, 1:].masked_fill(~copies["predict"][:, 1:], IGNORE)
            return {**batch, "tokens": tokens, "targets": torch.cat([batch["targets"][:-n], repeats])}
        return {"tokens": tokens, "doc_ids": torch.cat([batch["doc_ids"][:-n], copies["doc_ids"]]),
                "predict": torch.cat([torch.ones_like(batch["tokens"][:-n], dtype=torch.bool), copies["predict"]])}

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "prose": self.prose.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"copy curriculum state has seed {state['seed']}, not {self.seed}")
        self.index = int(state["index"])
        self.prose.load_state_dict(state["prose"])

    @property
    def skipped(self) -> Any:
        return getattr(self.prose, "skipped", {})


__all__ = ["CopyCurriculum", "copy_rows", "repeat_spans"]
