"""CTC between the speech adapter's outputs and the frozen LM's token embeddings (a training aid of
the `speech-adapter` stage; the LM and its tables never change).

Speech enters the LM as input embeddings (llama3-spec §5.4), so the LM reads an utterance best
when the span looks like text it can copy: the transcript's own token embeddings, in order, with
"nothing" between them. This loss asks for exactly that. Each adapter output's cosine similarity
to every row of the LM's embedding table is a logit; CTC over the transcript's token ids, with
the span's placeholder token as the blank, aligns outputs to tokens without a given alignment.

    loss = token_ctc_loss(speech, speech_lengths, token_ids, lm.tok_embeddings.weight,
                          blank=placeholder_id, temperature=0.05)
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def token_ctc_loss(speech: Tensor, lengths: Tensor, targets: Sequence[Sequence[int]], embeddings: Tensor,
                   *, blank: int, temperature: float) -> Tensor:
    """Mean CTC loss per target token.

    speech [N, S, dim] adapter outputs with lengths [N]; targets: the token ids of each transcript;
    embeddings [V, dim] the LM's input table (gradients reach `speech` only when it is frozen).
    """
    table = F.normalize(embeddings.float(), dim=-1)
    logits = F.normalize(speech.float(), dim=-1) @ table.T / temperature  # [N, S, V]
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)  # [S, N, V] as F.ctc_loss wants
    flat = torch.tensor([t for ids in targets for t in ids], dtype=torch.long, device=speech.device)
    target_lengths = torch.tensor([len(ids) for ids in targets], dtype=torch.long, device=speech.device)
    return F.ctc_loss(log_probs, flat, lengths, target_lengths, blank=blank, zero_infinity=True)


__all__ = ["token_ctc_loss"]
