"""Vision → LM projection (llama3-spec §3.1): a biased Linear from the encoder's concatenated
multi-layer features (6 × 1280 = 7680 for ViT-H/14) to the LM width, flattening tiles into one
sequence of image tokens per row."""

from __future__ import annotations

from torch import Tensor, nn


class VisionProjection(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, features: Tensor) -> Tensor:
        """features [B, N_img, tiles, tokens, in_dim] → image tokens [B, N_img·tiles·tokens, out_dim]."""
        return self.proj(features.flatten(1, 3))


__all__ = ["VisionProjection"]
