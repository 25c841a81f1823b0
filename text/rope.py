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
    """cos / sign-folded sin tables for positions [0, max_seq_len), looked up per pass.

    The sin table is stored as (−sin, +sin) over the two halves, so that rotating by it is
    `x·cos + swap_halves(x)·sin` (`rotate`): three kernels instead of `apply_rotary`'s five.
    """

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
        sin = angles.sin()
        return torch.cat([angles, angles], dim=-1).cos(), torch.cat([-sin, sin], dim=-1)

    def reset_tables(self, device: torch.device | str | None = None) -> None:
        """Recompute the tables (after building on the meta device): on `device`, else where they
        are, else — for tables still on the meta device — on the CPU."""
        if device is None:
            device = "cpu" if self.cos.device.type == "meta" else self.cos.device
        self.cos, self.sin = self._tables(torch.device(device))

    def forward(self, positions: Tensor | None, start: int, length: int,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(cos, signed sin), each [B or 1, T, 1, head_dim] in `dtype`, for the tokens of one pass:
        positions [B, T] when given, else the contiguous range [start, start + length)."""
        if positions is None:
            if start + length > self.max_seq_len:
                raise ValueError(f"position {start + length - 1} is beyond max_seq_len {self.max_seq_len}")
            cos, sin = self.cos[start:start + length][None], self.sin[start:start + length][None]
        else:
            cos, sin = self.cos[positions], self.sin[positions]
        return cos[:, :, None].to(dtype), sin[:, :, None].to(dtype)


def rotate(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """Rotate x [..., head_dim] by tables from `RotaryEmbedding` (broadcastable to x)."""
    half = x.shape[-1] // 2
    swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)
    return torch.addcmul(x * cos, swapped, signed_sin)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [..., head_dim] by plain cos/sin tables (broadcastable to x), half-split pairs."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


__all__ = ["rope_frequencies", "RotaryEmbedding", "rotate", "apply_rotary"]
