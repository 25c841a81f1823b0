"""The video temporal aggregator: a Perceiver resampler that merges each group of consecutive
frames into one effective frame of learned-latent tokens (llama3-spec §4; Flamingo §2.1; the
Llama 3 internals are unpublished, so the layout is OpenFlamingo's `PerceiverResampler`).

    aggregator = build_aggregator(create_config("tiny"))
    out = aggregator(frames)                        # [B, F, N, D] → [B, ceil(F/G), n_latents, D]
    out = aggregator(frames, frame_mask)            # frame_mask [B, F], True = real frame
    valid = aggregator.group_mask(frame_mask)       # [B, ceil(F/G)]: groups holding a real frame

Inside one group of G = frames_per_group frames, every frame token is LayerNormed and a learned
time embedding for the frame's position (0…G−1) is added to it — and, when `max_tokens` is set, a
learned spatial embedding for the token's index in its frame; the group's frames × tokens are
flattened into one media sequence; n_latents learned queries attend to the concatenation of that
sequence and themselves (LayerNorm on both) through `depth` attention + FFN residual layers; a
final LayerNorm closes. Attention over keys is permutation-invariant, so the time embeddings are
the only source of frame order, and the spatial ones the only sure source of where a token lies:
motion is a change of place over time, and a latent reads it by attending "object tokens of early
frames" (time × content) and taking their spatial embedding along in the values.

Last partial group: when F is not a multiple of G, the last group is padded with masked frames.
Masked keys get zero attention weight, so that group's output equals aggregating its r real
frames alone (time positions 0…r−1). Frames marked padding by `frame_mask` are excluded the same
way; a group with no real frame still yields finite tokens (latents attend to themselves) and is
reported False by `group_mask` so cross-attention can ignore it.

With `motion_dim` set, a time-odd summary of consecutive-frame changes (`video.motion`) is added
to the latent queries before the first layer: the latents then carry which way things move, which
attention pooling alone does not learn (the turn direction of the tiny demo's clips).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text.attention import sdpa
from video.config import ResamplerConfig
from video.motion import MotionSummary


class PerceiverAttention(nn.Module):
    """Latents query the concatenation [media; latents] (both LayerNormed), no biases."""

    def __init__(self, *, dim: int, n_heads: int, dim_head: int, norm_eps: float = 1e-5):
        super().__init__()
        self.n_heads = n_heads
        self.norm_media = nn.LayerNorm(dim, eps=norm_eps)
        self.norm_latents = nn.LayerNorm(dim, eps=norm_eps)
        self.to_q = nn.Linear(dim, n_heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, 2 * n_heads * dim_head, bias=False)
        self.to_out = nn.Linear(n_heads * dim_head, dim, bias=False)

    def forward(self, media: Tensor, latents: Tensor, media_mask: Tensor | None = None) -> Tensor:
        """media [B, M, D], latents [B, L, D], media_mask [B, M] (True = attend) → [B, L, D]."""
        media, latents = self.norm_media(media), self.norm_latents(latents)
        q = self._heads(self.to_q(latents))
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        mask = None
        if media_mask is not None:
            # Latent keys are always visible, so no query row is ever fully masked.
            keep_latents = media_mask.new_ones(media_mask.shape[0], latents.shape[1])
            mask = torch.cat([media_mask, keep_latents], dim=1)[:, None, None, :]
        out = sdpa(q, self._heads(k), self._heads(v), attn_mask=mask)
        return self.to_out(out.transpose(1, 2).flatten(2))

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)


def feed_forward(dim: int, mult: int, norm_eps: float = 1e-5) -> nn.Sequential:
    """Pre-norm GELU MLP of the reference: LayerNorm → Linear → GELU → Linear, no biases."""
    return nn.Sequential(
        nn.LayerNorm(dim, eps=norm_eps),
        nn.Linear(dim, mult * dim, bias=False),
        nn.GELU(),
        nn.Linear(mult * dim, dim, bias=False),
    )


class PerceiverLayer(nn.Module):
    """latents + attn(media, latents), then h + ffn(h)."""

    def __init__(self, attention: PerceiverAttention, feed_forward: nn.Module):
        super().__init__()
        self.attention = attention
        self.feed_forward = feed_forward

    def forward(self, media: Tensor, latents: Tensor, media_mask: Tensor | None = None) -> Tensor:
        latents = latents + self.attention(media, latents, media_mask)
        return latents + self.feed_forward(latents)


class PerceiverResampler(nn.Module):
    """Resamples up to `max_frames` frames of tokens into `n_latents` tokens.

    Owns the learned latents [n_latents, D] and per-frame time embeddings [max_frames, D]; the
    input norm, the layers and the final norm are passed in (see `build_aggregator`).
    """

    def __init__(self, *, input_norm: nn.Module, layers: nn.ModuleList, norm: nn.Module, dim: int,
                 n_latents: int, max_frames: int, max_tokens: int = 0, motion: nn.Module | None = None):
        super().__init__()
        self.input_norm = input_norm
        self.layers = layers
        self.norm = norm
        self.motion = motion  # optional time-odd summary [B, D] added to every latent query
        self.latents = nn.Parameter(torch.empty(n_latents, dim))
        self.time_embed = nn.Parameter(torch.empty(max_frames, dim))
        self.token_embed = nn.Parameter(torch.empty(max_tokens, dim)) if max_tokens else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Unit-variance time embeddings as in the Flamingo references, added to LayerNormed frame
        # tokens: frame order starts at the scale of the features whatever the encoder's output
        # scale (the frozen encoders here output norms from ~0.6 to ~11). Small latents: the
        # residual stream then starts from what the latents read from the frames, not from the
        # latents themselves, so the output depends on the clip from the first step.
        nn.init.normal_(self.latents, std=0.02)
        nn.init.normal_(self.time_embed)
        if self.token_embed is not None:
            nn.init.normal_(self.token_embed)  # as the time embeddings: at the features' scale

    def forward(self, media: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """media [B, T, N, D] with T ≤ max_frames, frame_mask [B, T] (True = real) → [B, L, D]."""
        batch, n_frames, n_tokens, _ = media.shape
        if n_frames > self.time_embed.shape[0]:
            raise ValueError(f"{n_frames} frames exceed the {self.time_embed.shape[0]} time embeddings")
        latents = self.latents.expand(batch, -1, -1)
        if self.motion is not None:
            latents = latents + self.motion(media, frame_mask)[:, None, :]
        media = self.input_norm(media) + self.time_embed[:n_frames, None, :]
        if self.token_embed is not None:
            if n_tokens > self.token_embed.shape[0]:
                raise ValueError(f"{n_tokens} tokens per frame exceed the {self.token_embed.shape[0]} spatial embeddings")
            media = media + self.token_embed[:n_tokens]
        media = media.flatten(1, 2)
        media_mask = None
        if frame_mask is not None:
            media_mask = frame_mask.repeat_interleave(n_tokens, dim=1)
        for layer in self.layers:
            latents = layer(media, latents, media_mask)
        return self.norm(latents)


class TemporalAggregator(nn.Module):
    """Merges each group of `frames_per_group` consecutive frames into one effective frame.

    [B, F, N, D] → [B, ceil(F / frames_per_group), n_latents, D]; groups are resampled
    independently (folded into the batch). See the module docstring for partial groups and masks.
    """

    def __init__(self, resampler: PerceiverResampler, frames_per_group: int,
                 config: ResamplerConfig | None = None):
        super().__init__()
        self.resampler = resampler
        self.frames_per_group = frames_per_group
        self.config = config  # what `build_aggregator` built it from; models describe themselves with it

    def n_groups(self, n_frames: int) -> int:
        return math.ceil(n_frames / self.frames_per_group)

    def forward(self, frames: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        batch, n_frames, n_tokens, dim = frames.shape
        group, n_groups = self.frames_per_group, self.n_groups(n_frames)
        pad = n_groups * group - n_frames
        if frame_mask is None and pad:
            frame_mask = frames.new_ones(batch, n_frames, dtype=torch.bool)
        if frame_mask is not None:
            frame_mask = F.pad(frame_mask.bool(), (0, pad), value=False).reshape(batch * n_groups, group)
        frames = F.pad(frames, (0, 0, 0, 0, 0, pad)).reshape(batch * n_groups, group, n_tokens, dim)
        out = self.resampler(frames, frame_mask)
        return out.view(batch, n_groups, *out.shape[1:])

    def group_mask(self, frame_mask: Tensor) -> Tensor:
        """frame_mask [B, F] (True = real) → [B, ceil(F / frames_per_group)]: any real frame."""
        pad = self.n_groups(frame_mask.shape[1]) * self.frames_per_group - frame_mask.shape[1]
        padded = F.pad(frame_mask.bool(), (0, pad), value=False)
        return padded.view(frame_mask.shape[0], -1, self.frames_per_group).any(dim=-1)


def build_aggregator(config: ResamplerConfig) -> TemporalAggregator:
    """Assemble the aggregator of `config` (Flamingo reference layout, llama3-spec §4)."""
    layers = nn.ModuleList(
        PerceiverLayer(
            PerceiverAttention(dim=config.dim, n_heads=config.n_heads, dim_head=config.dim_head,
                               norm_eps=config.norm_eps),
            feed_forward(config.dim, config.ff_mult, config.norm_eps),
        )
        for _ in range(config.depth)
    )
    resampler = PerceiverResampler(input_norm=nn.LayerNorm(config.dim, eps=config.norm_eps), layers=layers,
                                   norm=nn.LayerNorm(config.dim, eps=config.norm_eps), dim=config.dim,
                                   n_latents=config.n_latents, max_frames=config.frames_per_group,
                                   max_tokens=config.max_tokens,
                                   motion=MotionSummary(dim=config.dim, width=config.motion_dim,
                                                        grid=config.patch_grid, norm_eps=config.norm_eps)
                                   if config.motion_dim else None)
    return TemporalAggregator(resampler, config.frames_per_group, config)


__all__ = ["PerceiverAttention", "PerceiverLayer", "PerceiverResampler", "TemporalAggregator",
           "feed_forward", "build_aggregator"]
