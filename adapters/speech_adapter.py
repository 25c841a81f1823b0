"""The speech adapter (llama3-spec §5.3): Conformer frames (40 ms) → LM-width token embeddings (80 ms).

    1-D conv, kernel 3, stride 2          [B, T, enc_dim] → [B, ceil(T/2), dim]
    one rotary Transformer layer         pre-norm: x + MHSA(LN x), then x + FFN(x) (FFN has its LN)
    LayerNorm + linear to the LM width   [B, T', dim] → [B, T', lm_dim]

At the paper's size (enc 1536, dim 3072, FFN 4096, LM 4096) this is ~90M parameters. Padding is
zeroed before the conv and masked in attention, so batched outputs equal per-utterance outputs.

    adapter = build_speech_adapter(create_config("tiny").adapter, enc_dim=144, lm_dim=256)
    tokens, token_lengths = adapter(frames, frame_lengths)
"""

from __future__ import annotations

from torch import Tensor, nn

from speech.attention import FrameContext, RotarySelfAttention, padding_mask
from speech.conformer import FeedForward
from speech.config import SpeechAdapterConfig
from speech.encoder import stacked_lengths


class RotaryTransformerLayer(nn.Module):
    """Pre-norm bidirectional Transformer layer with rotary attention: [B, T, dim] → [B, T, dim]."""

    def __init__(self, *, attention_norm: nn.Module, attention: RotarySelfAttention,
                 feed_forward: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.attention_norm, self.attention, self.feed_forward = attention_norm, attention, feed_forward
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: FrameContext) -> Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), ctx))
        return x + self.feed_forward(x)


class SpeechAdapter(nn.Module):
    """Encoder frames [B, T, enc_dim] + lengths → LM token embeddings [B, ceil(T/2), lm_dim] + lengths."""

    def __init__(self, config: SpeechAdapterConfig, *, conv: nn.Conv1d, layer: RotaryTransformerLayer,
                 norm: nn.Module, proj: nn.Linear):
        super().__init__()
        self.config = config
        self.conv, self.layer, self.norm, self.proj = conv, layer, norm, proj

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """LM tokens for `lengths` encoder frames: ceil(lengths / stride)."""
        return stacked_lengths(lengths, self.config.stride)

    def forward(self, frames: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = frames.masked_fill(padding_mask(lengths, frames.shape[1])[..., None], 0.0)
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        out_lengths = self.output_lengths(lengths)
        c = self.config
        ctx = FrameContext.build(out_lengths, x.shape[1], c.dim // c.n_heads, c.rope_theta)
        x = self.proj(self.norm(self.layer(x, ctx)))
        if ctx.pad_mask is not None:
            x = x.masked_fill(ctx.pad_mask[..., None], 0.0)
        return x, out_lengths


def build_speech_adapter(config: SpeechAdapterConfig, *, enc_dim: int, lm_dim: int) -> SpeechAdapter:
    """The adapter from `enc_dim`-wide encoder frames to `lm_dim`-wide LM embeddings."""
    d = config.dim
    # padding = kernel // 2 with stride 2 gives ceil(T / 2) outputs, matching `output_lengths`
    conv = nn.Conv1d(enc_dim, d, config.kernel, stride=config.stride, padding=config.kernel // 2)
    layer = RotaryTransformerLayer(
        attention_norm=nn.LayerNorm(d),
        attention=RotarySelfAttention(d, config.n_heads, dropout=config.dropout),
        feed_forward=FeedForward(d, config.ffn_dim, dropout=config.dropout),
        dropout=config.dropout,
    )
    return SpeechAdapter(config, conv=conv, layer=layer, norm=nn.LayerNorm(d), proj=nn.Linear(d, lm_dim))


__all__ = ["RotaryTransformerLayer", "SpeechAdapter", "build_speech_adapter"]
