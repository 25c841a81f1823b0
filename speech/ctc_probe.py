"""A linear CTC probe on frozen encoder features (issue 7: BEST-RQ is judged by how well a linear
character classifier reads transcripts off its frames, against the same probe on a random encoder).

    probe = CTCProbe(encoder.dim)
    frames, lengths = frozen_features(encoder, feats, feat_lengths)
    loss = probe.loss(frames, lengths, ["hello world", …])
    texts = probe.decode(frames, lengths)           # greedy: best path, repeats merged, blanks dropped

With `upsample=k` each 40 ms frame emits k CTC steps (one linear to k·|vocab|, split in time): fast
speech has nearly as many characters as 40 ms frames (espeak at 200 words/min: ~18 characters
per second against 25 frames), and CTC needs room for blanks between repeated letters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHARACTERS = " 'abcdefghijklmnopqrstuvwxyz"
"""The probe's alphabet; index 0 is the CTC blank, characters are 1…len(CHARACTERS)."""


class CharVocab:
    """Lower-cased English characters ↔ ids 1…N (0 is blank); other characters are dropped."""

    def __init__(self, characters: str = CHARACTERS):
        self.characters = characters
        self.index = {c: i + 1 for i, c in enumerate(characters)}

    def __len__(self) -> int:
        return len(self.characters) + 1  # + blank

    def encode(self, text: str) -> list[int]:
        kept = "".join(c if c in self.index else " " if c.isspace() else "" for c in text.lower())
        return [self.index[c] for c in " ".join(kept.split())]  # one space between words

    def decode(self, ids: list[int]) -> str:
        return "".join(self.characters[i - 1] for i in ids if i > 0).strip()


@torch.no_grad()
def frozen_features(encoder: nn.Module, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Encoder frames computed in eval mode without gradient: the probe never changes the encoder."""
    was_training = encoder.training
    encoder.eval()
    try:
        return encoder(feats, lengths)
    finally:
        encoder.train(was_training)


class CTCProbe(nn.Module):
    """One linear layer: frames [B, T, dim] → log-probabilities [B, T·upsample, |vocab|] over chars + blank."""

    def __init__(self, dim: int, vocab: CharVocab | None = None, *, upsample: int = 1):
        super().__init__()
        self.vocab = vocab or CharVocab()
        self.upsample = upsample
        self.proj = nn.Linear(dim, upsample * len(self.vocab))

    def forward(self, frames: Tensor) -> Tensor:
        B, T, _ = frames.shape
        logits = self.proj(frames).float().view(B, T * self.upsample, len(self.vocab))
        return F.log_softmax(logits, dim=-1)

    def loss(self, frames: Tensor, lengths: Tensor, texts: list[str]) -> Tensor:
        """Mean CTC loss per target character over the batch."""
        targets = [torch.tensor(self.vocab.encode(t), dtype=torch.long) for t in texts]
        target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
        flat = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
        log_probs = self(frames).transpose(0, 1)  # [T·upsample, B, V] as F.ctc_loss wants
        return F.ctc_loss(log_probs, flat.to(frames.device), lengths * self.upsample,
                          target_lengths.to(lengths.device), blank=0, zero_infinity=True)

    @torch.no_grad()
    def decode(self, frames: Tensor, lengths: Tensor) -> list[str]:
        """Greedy CTC decoding of each utterance."""
        return greedy_decode(self(frames), lengths * self.upsample, self.vocab)


def greedy_decode(log_probs: Tensor, lengths: Tensor, vocab: CharVocab) -> list[str]:
    """Best path per frame → merge repeats → drop blanks → text, for [B, T, V] and lengths [B]."""
    best = log_probs.argmax(dim=-1).tolist()
    texts = []
    for path, n in zip(best, lengths.tolist()):
        path = path[:n]
        merged = [t for i, t in enumerate(path) if i == 0 or t != path[i - 1]]
        texts.append(vocab.decode(merged))
    return texts


__all__ = ["CHARACTERS", "CharVocab", "frozen_features", "CTCProbe", "greedy_decode"]
