"""Bidirectional rotary multi-head self-attention over padded frame sequences (llama3-spec §5.2).

torchaudio's Conformer attends with `nn.MultiheadAttention`, which has no positional encoding;
Llama 3's Conformer uses rotary attention instead. The rotation itself is the text model's
(`text.rope`), so speech and text rotate identically (half-split pairs).

Every utterance's positions start at 0 and padding keys are masked, so a frame's output does not
depend on what else is in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from text.attention import sdpa
from text.rope import rope_frequencies, rotate


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """lengths [B] → [B, max_len] bool, True at padding."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


@dataclass
class FrameContext:
    """What every layer of one pass over padded frames needs; built once per forward.

    pad_mask: [B, T] bool, True at padding (None when no row is padded).
    cos, sin: [1, T, 1, head_dim] rotary tables for positions 0..T-1, sin sign-folded as
        `text.rope.rotate` expects ((−sin, +sin) over the two halves).
    """

    pad_mask: Tensor | None
    cos: Tensor
    sin: Tensor
    attend_mask: Tensor | None = None
    """[B, 1, 1, T] bool for SDPA, True where a key may be attended (None: every key)."""

    def __post_init__(self) -> None:
        if self.pad_mask is not None and self.attend_mask is None:
            self.attend_mask = ~self.pad_mask[:, None, None, :]

    @classmethod
    def build(cls, lengths: Tensor, max_len: int, head_dim: int, theta: float) -> "FrameContext":
        pad = padding_mask(lengths, max_len)
        freqs = rope_frequencies(head_dim, theta, None).to(lengths.device)
        angles = torch.outer(torch.arange(max_len, device=lengths.device, dtype=torch.float32), freqs)
        cos = torch.cat([angles, angles], dim=-1).cos()[None, :, None]
        sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)[None, :, None]
        return cls(pad_mask=pad if bool(pad.any()) else None, cos=cos, sin=sin)


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with rotary q/k and a key-padding mask: [B, T, dim] → [B, T, dim]."""

    def __init__(self, dim: int, n_heads: int, *, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, dim // n_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor, ctx: FrameContext) -> Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3 * self.n_heads, self.head_dim)
        # q and k rotated in one pass; tensors stay [B, T, heads, D] and SDPA reads them transposed
        qk = rotate(qkv[:, :, : 2 * self.n_heads], ctx.cos, ctx.sin).to(qkv.dtype)
        q, k = qk[:, :, : self.n_heads].transpose(1, 2), qk[:, :, self.n_heads:].transpose(1, 2)
        v = qkv[:, :, 2 * self.n_heads:].transpose(1, 2)
        out = sdpa(q, k, v, attn_mask=ctx.attend_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(B, T, -1))


__all__ = ["padding_mask", "FrameContext", "RotarySelfAttention"]
