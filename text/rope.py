"""Rotary position embeddings with θ = 500,000 and the Llama 3.1 frequency scaling (llama3-spec §1.4).

herd rotates the two *halves* of each head (the Hugging Face convention), so exported weights
need no q/k permutation; a checkpoint in Meta's interleaved-pairs convention is permuted once in
`text/convert.py`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from text.config import RopeScaling


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> Tensor:
    """Inverse frequencies, shape [head_dim // 2], fp32, with Llama 3.1 scaling if given."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if scaling is None:
        return freqs.float()
    low_wavelen = scaling.original_max_seq_len / scaling.low_freq_factor
    high_wavelen = scaling.original_max_seq_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / freqs
    # Between the two thresholds, blend the scaled and unscaled frequency.
    smooth = (scaling.original_max_seq_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * freqs / scaling.factor + smooth * freqs
    scaled = torch.where(wavelen > low_wavelen, freqs / scaling.factor, blended)
    scaled = torch.where(wavelen < high_wavelen, freqs, scaled)
    return scaled.float()


class RotaryEmbedding(torch.nn.Module):
    """cos/sin tables for positions [0, max_seq_len); looked up per token by position id."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float, scaling: RopeScaling | None):
        super().__init__()
        self.head_dim, self.max_seq_len = head_dim, max_seq_len
        self.theta, self.scaling = theta, scaling
        cos, sin = self._tables(None)  # on the meta device these allocate nothing
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, device: torch.device | None) -> tuple[Tensor, Tensor]:
        freqs = rope_frequencies(self.head_dim, self.theta, self.scaling).to(device)
        angles = torch.outer(torch.arange(self.max_seq_len, dtype=torch.float32, device=device), freqs)
        angles = torch.cat([angles, angles], dim=-1)  # [max_seq_len, head_dim], halves repeated
        return angles.cos(), angles.sin()

    def reset_tables(self, device: torch.device | str | None = None) -> None:
        """Recompute the tables (after building on the meta device): on `device`, else where they
        are, else — for tables still on the meta device — on the CPU."""
        if device is None:
            device = "cpu" if self.cos.device.type == "meta" else self.cos.device
        self.cos, self.sin = self._tables(torch.device(device))

    def forward(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """positions [B, T] (int) → (cos, sin), each [B, 1, T, head_dim] in `dtype`."""
        return (self.cos[positions].unsqueeze(1).to(dtype), self.sin[positions].unsqueeze(1).to(dtype))


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, H, T, head_dim] by the angles in cos/sin [B, 1, T, head_dim] (half-split pairs)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


__all__ = ["rope_frequencies", "RotaryEmbedding", "apply_rotary"]
