"""Synthetic copy rows in `text-pretrain`, so that a small LM learns in-context copying.

Why: the speech adapter's outputs reach the frozen LM as prompt embeddings (llama3-spec §5.4), so
transcribing is repeating what the prompt holds, and the LM must be able to copy. The tiny LM does
not learn that from its ~2M prose tokens (`herd eval text`: copy_accuracy = its first-pass
accuracy). A copy row is spans of `span` random token ids, each followed by its repeat; only the
repeats are predicted. Measured on 2026-12-05 with the tiny LM (6 × 256, 8K vocabulary), batches of
8 rows, lr 1e-3, accuracy on repeats of spans drawn from the whole vocabulary:

- untied embeddings: nothing is copied after 250 steps (the input and output tables would have to
  be aligned row by row, and each of the 8K rows is seen once in ~8 batches);
- tied (and frozen) embeddings, 200 steps on all ids from the start: no copying either (at first
  the gain from copying is ~context/vocabulary, too small a signal);
- tied embeddings, 150 steps on a fixed set of 256 ids, then all ids: 92 % by step 250 (99.9 % by
  step 200 when the table is frozen meanwhile). The circuit learned on few ids is generic; the
  256-id prior it also learned is unlearned within 50 steps.

So the curriculum is: `warmup_steps` batches of copy rows only, the first `subset_steps` of them
over `subset` ids (this builds the circuit), then prose with a `fraction` of every batch's rows
made copy rows of their own prose, span by span (random-id rows here taught copying in random
sequences only). Use it with `model.tie_embeddings = true`. With the demo's text-pretrain settings
plus `tie_embeddings`, 200 warm-up steps (150 on 256 ids) and 800 prose steps at a fraction of
0.25, `herd eval text` measured copy_accuracy 0.387 against 0.103 on the first pass (perplexity 259;
0.108 against 0.106 with random-id rows mixed in). text-sft (600 steps at lr 1e-3) brings it back
to 0.100 (0.071 first pass) unless a share of its rows are copy rows too (`sft.copy_fraction`;
0.355 against 0.068 at 0.25). It is off in the tiny configs for now: no SFT variant repeats a
chat-format "Repeat after me: S" (0 of 40 exact; the first word has no cue), and the speech
adapter on these LMs still misses (WER 0.92).

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
    """{"tokens", "doc_ids", "predict"} [rows, length]: spans of `span` ids drawn from [0, ids), each
    followed by its repeat (see `repeat_spans`)."""
    return repeat_spans(torch.randint(0, ids, (rows, length), generator=generator), span)


def repeat_spans(tokens: Tensor, span: int) -> dict[str, Tensor]:
    """tokens [rows, length] → {"tokens", "doc_ids", "predict"} [rows, length]: the rows' first
    tokens cut into spans of `span`, each followed by its repeat; `predict` marks the repeated
    tokens (the first of each repeat excluded: nothing says where a repeat starts)."""
    rows, length = tokens.shape
    pairs = -(-length // (2 * span))
    spans = tokens[:, :pairs * span].reshape(rows, pairs, 1, span)
    out = spans.expand(rows, pairs, 2, span).reshape(rows, -1)[:, :length]
    predict = (torch.arange(length) % (2 * span) > span).expand(rows, length)
    return {"tokens": out, "doc_ids": torch.zeros_like(out), "predict": predict.clone()}


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

    def _copy(self, rows: int) -> dict[str, Tensor]:
        s = self.section
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.index) * 4096 + self.rank)
        ids = s.subset if self.index < s.subset_steps else self.ids
        return copy_rows(rows, self.length, ids=min(ids, self.ids), span=s.span, generator=generator)

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
        """The batch with its last rows made copy rows of their own prose: copying random ids is
        not enough, the LM learns to copy in random sequences only (prose copy_accuracy 0.108
        against 0.106 on the first pass, with 0.94 on random spans, 2026-12-05)."""
        n = round(self.section.fraction * batch["tokens"].shape[0])
        if not n:
            return batch
        copies = repeat_spans(batch["tokens"][-n:], self.section.span)
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
