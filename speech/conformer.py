"""The Conformer layer (Gulati et al. 2020; llama3-spec §5.2) built from torchaudio's pieces.

    x = x + ½·FFN(x)                     macaron half-step (torchaudio `_FeedForwardModule`)
    x = x + MHSA(LN(x))                  rotary, key-padding masked (herd `RotarySelfAttention`)
    x = x + Conv(x)                      torchaudio `_ConvolutionModule`, padding-safe (below)
    x = x + ½·FFN(x)
    x = LN(x)

What torchaudio lacks and is added here: rotary attention, and a convolution module that zeroes
padded frames before its depthwise conv (otherwise a padded batch leaks padding into the last
kernel//2 valid frames of shorter utterances) with a per-frame norm option.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchaudio.models.conformer import _ConvolutionModule, _FeedForwardModule

from speech.attention import FrameContext, RotarySelfAttention
from speech.config import ConformerConfig

FeedForward = _FeedForwardModule
"""LN → Linear → SiLU → Dropout → Linear → Dropout: [*, dim] → [*, dim] (torchaudio's, as is)."""


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a [B, C, T] tensor: each frame normalised on its own."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvolutionModule(_ConvolutionModule):
    """torchaudio's convolution module — LN → pointwise conv to 2C → GLU → depthwise conv →
    norm → SiLU → pointwise conv → dropout — with padded frames zeroed before the depthwise conv.

    x [B, T, dim], pad_mask [B, T] (True at padding) → [B, T, dim].
    """

    def __init__(self, dim: int, kernel: int, *, norm: nn.Module, dropout: float = 0.0):
        super().__init__(input_dim=dim, num_channels=dim, depthwise_kernel_size=kernel,
                         dropout=dropout, bias=True)
        self.sequential[3] = norm  # torchaudio's BatchNorm1d/GroupNorm slot

    def forward(self, x: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        x = self.sequential[:2](self.layer_norm(x).transpose(1, 2))  # pointwise + GLU, [B, C, T]
        if pad_mask is not None:
            x = x.masked_fill(pad_mask[:, None, :], 0.0)  # "same" padding of the depthwise conv
        return self.sequential[2:](x).transpose(1, 2)


class ConformerLayer(nn.Module):
    """One Conformer layer (macaron FFNs, rotary MHSA, convolution): [B, T, dim] → [B, T, dim]."""

    def __init__(self, *, ffn1: nn.Module, attention_norm: nn.Module, attention: RotarySelfAttention,
                 conv: ConvolutionModule, ffn2: nn.Module, final_norm: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.ffn1, self.attention_norm, self.attention = ffn1, attention_norm, attention
        self.attention_dropout = nn.Dropout(dropout)
        self.conv, self.ffn2, self.final_norm = conv, ffn2, final_norm

    def forward(self, x: Tensor, ctx: FrameContext) -> Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), ctx))
        x = x + self.conv(x, ctx.pad_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


def build_conformer_layer(config: ConformerConfig) -> ConformerLayer:
    """A Conformer layer for `config`; `conv_norm` picks the norm module, not a branch in forward."""
    d = config.dim
    norm = ChannelLayerNorm(d) if config.conv_norm == "layer" else nn.BatchNorm1d(d)
    return ConformerLayer(
        ffn1=FeedForward(d, config.ffn_dim, dropout=config.dropout),
        attention_norm=nn.LayerNorm(d),
        attention=RotarySelfAttention(d, config.n_heads, dropout=config.dropout),
        conv=ConvolutionModule(d, config.conv_kernel, norm=norm, dropout=config.dropout),
        ffn2=FeedForward(d, config.ffn_dim, dropout=config.dropout),
        final_norm=nn.LayerNorm(d),
        dropout=config.dropout,
    )


__all__ = ["FeedForward", "ChannelLayerNorm", "ConvolutionModule", "ConformerLayer",
           "build_conformer_layer"]
