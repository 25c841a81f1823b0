"""Parameter and training-FLOP accounting for `herd model info` and the scaling-law tools.

Training FLOPs = 6·N·D (forward + backward of every matmul weight, N excluding the input
embedding lookup, which multiplies nothing) plus the attention term 6·L·d·T·D: the score and
value matmuls, 4·T·d per token per layer forward, halved by the causal mask, tripled for backward.
With D = 15.6T tokens at T = 8192 the 405B preset lands within 4% of the paper's 3.8×10^25.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from text.config import TextConfig


@dataclass(frozen=True)
class ModelSize:
    total: int
    """Every parameter, tied tables counted once."""
    embedding: int
    """The input embedding table."""
    non_embedding: int
    """total − embedding (and − output table when untied)."""
    matmul: int
    """Parameters that multiply activations: total − input embedding."""


def count_parameters(config: TextConfig) -> ModelSize:
    """Exact counts from the module built on the meta device (no memory is allocated)."""
    from text.model import Transformer

    with torch.device("meta"):
        model = Transformer(config)
    total = sum(p.numel() for p in model.parameters())
    embedding = config.vocab_size * config.dim
    output = 0 if config.tie_embeddings else embedding
    matmul = total - (0 if config.tie_embeddings else embedding)
    return ModelSize(total=total, embedding=embedding, non_embedding=total - embedding - output,
                     matmul=matmul)


def training_flops(config: TextConfig, tokens: float, seq_len: int = 8192) -> float:
    """Training FLOPs for `tokens` tokens at sequence length `seq_len` (see module docstring)."""
    size = count_parameters(config)
    attention = 6 * config.n_layers * config.dim * seq_len
    return (6 * size.matmul + attention) * tokens


__all__ = ["ModelSize", "count_parameters", "training_flops"]
