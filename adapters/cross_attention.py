"""Gated cross-attention block: text queries attend to projected image tokens (llama3-spec §3.2, §7).

    h = x + tanh(g_attn) · row_mask · CrossAttn(RMSNorm(x), image K/V)
    y = h + tanh(g_ffn)  · row_mask · SwiGLU(RMSNorm(h))

Cross-attention: GQA, per-head RMSNorm on q and k, no RoPE. Image keys/values are computed once
per prompt (`image_kv`) and reused by every decoding step. Text rows with no image to attend
(`row_mask` = 0) attend to everything in the softmax — keeping it finite — and are zeroed after.
With both gates at zero the block returns x unchanged, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from adapters.gate import TanhGate
from text.attention import at_rows, sdpa
from text.model import FeedForward, RMSNorm


@dataclass
class ImageAttention:
    """What one cross-attention block needs for a pass over T text tokens.

    kv: (k, v) each [B, n_kv_heads, S, head_dim], k already normed; S = image tokens per row.
    mask: [B, 1, T, S] bool, True where the text token may attend the image token; rows without
        any image are all True (finite softmax; their output is zeroed by row_mask).
    row_mask: [B, T, 1] in the activation dtype, 1 for text rows that see at least one image token.
    """

    kv: tuple[Tensor, Tensor]
    mask: Tensor
    row_mask: Tensor


class CrossAttention(nn.Module):
    """GQA cross-attention with q/k RMSNorm per head and no positional encoding."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, norm_eps: float = 1e-5):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, norm_eps)
        self.k_norm = RMSNorm(self.head_dim, norm_eps)

    def image_kv(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """image [B, S, dim] (projected image tokens) → k, v [B, n_kv_heads, S, head_dim]."""
        B, S, _ = image.shape
        k = self.k_norm(self.wk(image).view(B, S, self.n_kv_heads, self.head_dim))
        v = self.wv(image).view(B, S, self.n_kv_heads, self.head_dim)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        """x [B, T, dim] → [B, T, dim]."""
        B, T, _ = x.shape
        q = self.q_norm(self.wq(x).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)
        k, v = (t.to(q.dtype) for t in kv)
        out = sdpa(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class CrossAttentionBlock(nn.Module):
    """RMSNorm → cross-attn → tanh gate → residual; RMSNorm → SwiGLU → tanh gate → residual."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, ffn_hidden_dim: int,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.attention_norm = RMSNorm(dim, norm_eps)
        self.attention = CrossAttention(dim, n_heads, n_kv_heads, norm_eps)
        self.attn_gate = TanhGate()
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.feed_forward = FeedForward(dim, ffn_hidden_dim)
        self.ffn_gate = TanhGate()

    def forward(self, x: Tensor, image: ImageAttention, rows: Tensor | None = None) -> Tensor:
        """x [B, T, dim] → [B, T, dim]; the FFN runs at the flat positions `rows` only (all when
        None), as the LM layers' do (`text.attention.at_rows`)."""
        attn = self.attention(self.attention_norm(x), image.kv, image.mask)
        h = x + self.attn_gate(attn * image.row_mask)
        ffn = at_rows(lambda r: self.feed_forward(self.ffn_norm(r)), h, rows)
        return h + self.ffn_gate(ffn * image.row_mask)


__all__ = ["ImageAttention", "CrossAttention", "CrossAttentionBlock"]
