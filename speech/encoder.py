"""The Llama 3 speech encoder (llama3-spec §5.2): stride-4 frame stacking + linear projection
(10 ms log-mel frames → 40 ms frames), then a stack of rotary Conformer layers.

    encoder = build_encoder(create_config("tiny").encoder)
    frames, frame_lengths = encoder(feats, lengths)   # [B, T, 80] → [B, ceil(T/4), dim]

Padding never reaches a valid frame: inputs past each length are zeroed before stacking,
attention masks padding keys, the convolutions see zeros there, and outputs past each length are
zero. A padded batch therefore gives each utterance the output it gets at batch size 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speech.attention import FrameContext, padding_mask
from speech.conformer import ConformerLayer, build_conformer_layer
from speech.config import ConformerConfig


def stack_frames(x: Tensor, lengths: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """[B, T, F] → [B, ceil(T/stride), stride·F]: consecutive frames concatenated, padding zeroed.

    The last stacked frame of an utterance whose length is not a multiple of `stride` is completed
    with zeros, the same in a batch as alone. Returns the stacked frames and ceil(lengths/stride).
    """
    B, T, F = x.shape
    x = x.masked_fill(padding_mask(lengths, T)[..., None], 0.0)
    pad = -T % stride
    if pad:
        x = torch.cat([x, x.new_zeros(B, pad, F)], dim=1)
    return x.reshape(B, (T + pad) // stride, stride * F), stacked_lengths(lengths, stride)


def stacked_lengths(lengths: Tensor, stride: int) -> Tensor:
    """ceil(lengths / stride): frames after stacking (or a stride-`stride` conv with same padding)."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class StackingFrontEnd(nn.Module):
    """Stride-`stride` stacking + linear: [B, T, n_mels] → [B, ceil(T/stride), dim]."""

    def __init__(self, n_mels: int, stride: int, dim: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(n_mels * stride, dim)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        stacked, out_lengths = stack_frames(feats, lengths, self.stride)
        return self.proj(stacked), out_lengths


class ConformerEncoder(nn.Module):
    """Log-mel features [B, T, n_mels] + lengths [B] → 40 ms frames [B, ceil(T/4), dim] + lengths."""

    def __init__(self, config: ConformerConfig, front_end: StackingFrontEnd,
                 layers: list[ConformerLayer]):
        super().__init__()
        self.config = config
        self.front_end = front_end
        self.layers = nn.ModuleList(layers)

    @property
    def dim(self) -> int:
        return self.config.dim

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Encoder frames for `lengths` input frames."""
        return stacked_lengths(lengths, self.config.stack)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x, out_lengths = self.front_end(feats, lengths)
        ctx = FrameContext.build(out_lengths, x.shape[1], self.config.head_dim, self.config.rope_theta)
        for layer in self.layers:
            x = layer(x, ctx)
        if ctx.pad_mask is not None:
            x = x.masked_fill(ctx.pad_mask[..., None], 0.0)
        return x, out_lengths


def build_encoder(config: ConformerConfig) -> ConformerEncoder:
    """The Conformer encoder for `config` (e.g. `create_config("1B").encoder`)."""
    return ConformerEncoder(
        config,
        StackingFrontEnd(config.n_mels, config.stack, config.dim),
        [build_conformer_layer(config) for _ in range(config.n_layers)],
    )


__all__ = ["stack_frames", "stacked_lengths", "StackingFrontEnd", "ConformerEncoder", "build_encoder"]
