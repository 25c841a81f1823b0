"""speech.token_ctc: adapter outputs that equal the transcript's token embeddings (blank rows
elsewhere) score far better than the same rows shuffled, and only the outputs receive gradient."""

from __future__ import annotations

import torch

from speech.token_ctc import token_ctc_loss

V, DIM, BLANK = 50, 16, 0


def _aligned(table: torch.Tensor, targets: list[list[int]], frames: int) -> torch.Tensor:
    """[N, frames, DIM]: each target token's embedding at one frame, the blank's at the others."""
    out = table[BLANK].repeat(len(targets), frames, 1)
    for i, ids in enumerate(targets):
        for j, t in enumerate(ids):
            out[i, 2 * j + 1] = table[t]
    return out


def test_aligned_embeddings_score_better_than_shuffled():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(V, DIM, generator=g)
    targets = [[3, 7, 7, 12], [40, 2]]
    speech = _aligned(table, targets, frames=10)
    lengths = torch.tensor([10, 6])
    good = token_ctc_loss(speech, lengths, targets, table, blank=BLANK, temperature=0.1)
    shuffled = speech[:, torch.randperm(10, generator=g)]
    bad = token_ctc_loss(shuffled, lengths, targets, table, blank=BLANK, temperature=0.1)
    assert float(good) < 0.5 < float(bad)


def test_gradient_reaches_the_outputs_not_the_frozen_table():
    table = torch.randn(V, DIM)
    speech = torch.randn(2, 8, DIM, requires_grad=True)
    loss = token_ctc_loss(speech, torch.tensor([8, 5]), [[1, 2, 3], [4]], table, blank=BLANK, temperature=0.05)
    loss.backward()
    assert speech.grad is not None and speech.grad.abs().sum() > 0 and not table.requires_grad
    assert torch.all(speech.grad[1, 5:] == 0)  # padding frames take no part
