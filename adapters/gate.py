"""TanhGate: x · tanh(g) with a learnable scalar g initialised to zero (llama3-spec §3.2), so a
gated residual branch starts as an exact no-op (tanh(0) = 0)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TanhGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.tanh()


__all__ = ["TanhGate"]
