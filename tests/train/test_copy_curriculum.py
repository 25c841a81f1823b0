"""The copy curriculum of text-pretrain: row layout, the warm-up → prose schedule, exact resume."""

from __future__ import annotations

import pytest
import torch

from train.copy_curriculum import CopyCurriculum, copy_rows
from train.stage_configs import CopySection
from train.stages.text_pretrain import next_token_batch
from train.stages.text_common import IGNORE


class Prose:
    """A resumable stand-in for PackedTextLoader: batch i is all i+1."""

    def __init__(self, batch_size: int = 4, length: int = 17):
        self.shape, self.i = (batch_size, length), 0

    def __iter__(self):
        while True:
            self.i += 1
            yield {"tokens": torch.full(self.shape, self.i), "doc_ids": torch.zeros(self.shape, dtype=torch.long)}

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def pieces(row: torch.Tensor, predict: torch.Tensor) -> list[tuple[list[int], list[int]]]:
    """(piece, repeat) pairs of a copy row, read back from where `predict` is on."""
    pairs, at, length = [], 0, len(row)
    while at < length:
        end = at + 1
        while end < length and not predict[end]:
            end += 1
        n = end - 1 - at  # the repeat's first token is not predicted
        if end >= length:  # a cut-off piece with no predicted repeat
            break
        stop = end
        while stop < length and predict[stop]:
            stop += 1
        pairs.append((row[at:at + n].tolist(), row[at + n:stop].tolist()))
        at = stop
    return pairs


def test_copy_rows_repeat_pieces_of_varying_length_and_predict_only_the_repeats() -> None:
    rows = copy_rows(3, 200, ids=5000, span=16, generator=torch.Generator().manual_seed(0))
    tokens, predict = rows["tokens"], rows["predict"]
    assert tokens.shape == predict.shape == (3, 200) and int(tokens.max()) < 5000
    lengths = set()
    for row, wanted in zip(tokens, predict):
        found = pieces(row, wanted)
        assert len(found) >= 6
        for piece, repeat in found[:-1]:  # the last one may be cut off by the row's end
            assert 8 <= len(piece) <= 16 and repeat == piece
            lengths.add(len(piece))
        assert found[-1][1] == found[-1][0][:len(found[-1][1])]
    assert len(lengths) >= 4  # no single distance back to learn instead of copying
    _, _, targets = next_token_batch(rows)  # target t+1 is predicted only inside a repeat
    assert torch.equal(targets[predict[:, 1:]], tokens[:, 1:][predict[:, 1:]])
    assert ((targets != IGNORE) == predict[:, 1:]).all()


def test_warmup_then_prose_with_a_share_of_copy_rows() -> None:
    section = CopySection(warmup_steps=3, subset_steps=2, subset=5, fraction=0.25, span=4)
    batches = iter(CopyCurriculum(Prose(), ids=1000, seq_len=16, batch_size=4, section=section))
    warm = [next(batches) for _ in range(3)]
    assert all(b["predict"].shape == (4, 17) for b in warm)
    assert int(warm[0]["tokens"].max()) < 5 and int(warm[1]["tokens"].max()) < 5  # the subset first
    assert int(warm[2]["tokens"].max()) >= 5
    mixed = next(batches)
    assert torch.equal(mixed["tokens"][:3], torch.full((3, 17), 1))  # prose starts after the warm-up
    assert mixed["predict"][:3].all() and not mixed["predict"][3].all()


def test_resume_is_exact() -> None:
    section = CopySection(warmup_steps=2, fraction=0.5, span=4)
    first = CopyCurriculum(Prose(), ids=1000, seq_len=16, batch_size=4, section=section, seed=3)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    expected = [next(it) for _ in range(3)]
    second = CopyCurriculum(Prose(), ids=1000, seq_len=16, batch_size=4, section=section, seed=3)
    second.load_state_dict(state)
    got = iter(second)
    for want in expected:
        assert all(torch.equal(want[k], v) for k, v in next(got).items())


def test_bad_sections_are_refused() -> None:
    with pytest.raises(ValueError, match="subset_steps"):
        CopySection(warmup_steps=2, subset_steps=3)
    with pytest.raises(ValueError, match="fraction"):
        CopySection(fraction=1.0)


class Dialogues(Prose):
    """Dialogue batches as text-sft sees them: targets [B, T] with IGNORE outside the replies."""

    def __iter__(self):
        for batch in super().__iter__():
            targets = batch["tokens"][:, 1:].clone()
            targets[:, :8] = IGNORE
            yield {"tokens": batch["tokens"], "targets": targets}


def test_dialogue_batches_get_copy_rows_with_targets_on_the_repeats() -> None:
    section = CopySection(fraction=0.5, span=4)
    batch = next(iter(CopyCurriculum(Dialogues(), ids=1000, seq_len=16, batch_size=4, section=section)))
    assert set(batch) == {"tokens", "targets"} and batch["targets"].shape == (4, 16)
    assert torch.equal(batch["targets"][:2, 8:], torch.full((2, 8), 1))  # the dialogue rows are untouched
    copy_tokens, copy_targets = batch["tokens"][2], batch["targets"][2]
    kept = copy_targets != IGNORE
    assert kept.sum() == 6 and torch.equal(copy_targets[kept], copy_tokens[1:][kept])

