"""Video fusion: the image fusion model plus a temporal aggregator and gated video cross-attention
blocks (llama3-spec §4).

    video = build_video_fusion_model(image_model, create_config("tiny", dim=lm_dim))
    video.load_image_state_dict(vision_adapter_state)   # raises unless exactly the video keys are missing
    logits = video(tokens, video=frames, video_ratio_ids=ids)   # frames [B, F, tiles, 3, t, t]

- Each frame goes through the (frozen) image encoder and projection on its own; the Perceiver
  resampler (`video.resampler.TemporalAggregator`) merges every `frames_per_group` consecutive
  frames into one effective frame of `n_latents` tokens at the LM width.
- Video cross-attention blocks have the image blocks' design (`CrossAttentionBlock`, zero-init
  tanh gates) and run before every 4th image block, counted from the last one (`video_schedule`;
  at least one), so at start the logits are the image model's bit for bit.
- `<|video|>` is id V+1; text attends to the video whose token it follows, with the image rule
  (`adapters.fusion.image_attendance`): one video per `<|video|>` token, effective frames of
  padding-only groups are never attended.
- The image model's modules and state-dict keys are unchanged; the video path adds
  `video_aggregator` and `video_cross_attention_layers` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adapters.cross_attention import CrossAttentionBlock, ImageAttention
from adapters.fusion import (FusionCache, FusionConfig, FusionModel, ImageSpans, build_fusion_model,
                            fusion_schedule, image_attendance)
from adapters.projection import VisionProjection
from adapters.text_loading import adapter_keys, adapter_params, load_text_state_dict
from text.config import TextConfig
from text.model import Transformer, logits_where
from video.config import ResamplerConfig
from video.resampler import TemporalAggregator, build_aggregator
from video.word_head import CaptionWordHead
from vision.config import VisionConfig
from vision.encoder import VisionEncoder

VIDEO_MODULES = ("video_aggregator", "video_cross_attention_layers", "video_word_head")
"""Top-level submodules that belong to the video path (everything else is the image model);
`video_word_head` is the optional training-only caption-word head (`video.word_head`)."""

VIDEO_EVERY = 4
"""One video cross-attention block per this many image cross-attention blocks (llama3-spec §4)."""


def video_schedule(image_schedule: list[int], every: int = VIDEO_EVERY) -> list[int]:
    """LM layers that get a video block: every `every`-th image block counted from the last one
    (the rule of `fusion_schedule` applied to the image blocks), at least one."""
    picks = fusion_schedule(len(image_schedule), max(1, len(image_schedule) // every))
    return [image_schedule[i] for i in picks]


@dataclass
class VideoFusionCache(FusionCache):
    """`FusionCache` plus, once a prompt had a video, the per-block video K/V, which effective
    frames are real ([B, N_videos, groups]) and the running text→video spans."""

    video_kv: dict[int, tuple[Tensor, Tensor]] | None = None
    group_valid: Tensor | None = None
    video_spans: ImageSpans | None = None


class VideoFusionModel(FusionModel):
    """The image fusion model with the video path added. Build with `build_video_fusion_model`."""

    def __init__(self, lm: Transformer, encoder: VisionEncoder, projection: VisionProjection,
                 blocks: dict[int, CrossAttentionBlock], aggregator: TemporalAggregator,
                 video_blocks: dict[int, CrossAttentionBlock], fusion: FusionConfig = FusionConfig(),
                 word_head: CaptionWordHead | None = None):
        super().__init__(lm, encoder, projection, blocks, fusion)
        self.video_aggregator = aggregator
        self.video_cross_attention_layers = nn.ModuleDict(
            {str(i): b for i, b in sorted(video_blocks.items())})
        self.video_word_head = word_head
        self.video_schedule = sorted(video_blocks)
        self.video_token_id = self.image_token_id + 1

    # --- parameters and checkpoints -------------------------------------------------------
    def video_params(self) -> dict[str, nn.Parameter]:
        """The video path's own parameters by name (aggregator and video blocks)."""
        return adapter_params(self, VIDEO_MODULES)

    def video_state_keys(self) -> set[str]:
        return adapter_keys(self, VIDEO_MODULES)

    def load_image_state_dict(self, state: dict[str, Tensor]) -> list[str]:
        """Load an image fusion model's state dict; raise unless exactly the video keys are missing."""
        return load_text_state_dict(self, state, VIDEO_MODULES)

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model (meta.json `model`; `from_spec` is the inverse)."""
        return {**super().spec(), "arch": "llama3-video", "resampler": self.resampler_config.to_dict(),
                "word_head": self.video_word_head is not None}

    @property
    def resampler_config(self) -> ResamplerConfig:
        return self.video_aggregator.config

    # --- video inputs ---------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype | None = None) -> VideoFusionCache:
        return VideoFusionCache(self.text_model.new_cache(batch, max_len, dtype=dtype))

    def frame_features(self, frames: Tensor, ratio_ids: Tensor | None = None) -> Tensor:
        """frames [B, F, tiles, 3, t, t] (tiles ≤ max_tiles) and ratio_ids [B, F] (None: all 1, the
        one-tile grid) → projected per-frame tokens [B, F, tiles·tokens_per_tile, dim], through the
        image encoder and projection.

        Only the tiles given are kept (video frames are one tile each, see
        `video.transform.VideoTransform`), so the encoder's padding tiles never reach the aggregator.
        """
        B, F, tiles = frames.shape[:3]
        if ratio_ids is None:  # one-tile frames: aspect-ratio id 1 (the 1×1 grid)
            ratio_ids = torch.ones(B, F, dtype=torch.long, device=frames.device)
        pad = self.vision_encoder.config.max_tiles - tiles
        padded = nn.functional.pad(frames, (0, 0, 0, 0, 0, 0, 0, pad)) if pad else frames
        features = self.vision_encoder(padded, ratio_ids)[:, :, :tiles]  # [B, F, tiles, tok, out]
        return self.vision_projection.proj(features).flatten(2, 3)

    def aggregate(self, features: Tensor, frame_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """features [B, F, S, dim] → (video tokens [B, G·n_latents, dim], group_valid [B, G])."""
        B, F = features.shape[:2]
        out = self.video_aggregator(features, frame_mask)  # [B, G, L, dim]
        mask = frame_mask if frame_mask is not None else features.new_ones(B, F, dtype=torch.bool)
        return out.flatten(1, 2), self.video_aggregator.group_mask(mask)

    def caption_word_logits(self, video_tokens: Tensor) -> Tensor:
        """video tokens [B, G·n_latents, dim] → caption-word logits [B, V] of the word head (the
        LM's final norm and output table read them; see `video.word_head`)."""
        if self.video_word_head is None:
            raise ValueError("this video model has no caption-word head (build it with word_head=True)")
        return self.video_word_head(video_tokens, self.norm, self.output)

    def video_kv(self, video_tokens: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
        """K/V of every video block, each [B, n_kv, G·n_latents, head_dim]."""
        return {i: self.video_cross_attention_layers[str(i)].attention.image_kv(video_tokens)
                for i in self.video_schedule}

    def attach_video(self, cache: VideoFusionCache, frames: Tensor, ratio_ids: Tensor | None = None,
                     frame_mask: Tensor | None = None) -> None:
        """Encode one video per row ([B, F, tiles, 3, t, t], ratio_ids [B, F]) into an empty cache,
        so that a text-only decoding loop (`text.generate`) attends it from the first token on."""
        if cache.text.filled:
            raise ValueError("attach the video before the prompt is run through the cache")
        tokens, valid = self.aggregate(self.frame_features(frames, ratio_ids), frame_mask)
        cache.video_kv, cache.group_valid = self.video_kv(tokens), valid[:, None]
        cache.video_spans = ImageSpans.start(frames.shape[0], 1, frames.device)

    def video_attention(self, tokens: Tensor, video: Tensor | None, video_ratio_ids: Tensor | None,
                        video_features: Tensor | None, frame_mask: Tensor | None,
                        cache: VideoFusionCache | None, dtype: torch.dtype,
                        aggregated: tuple[Tensor, Tensor] | None = None) -> dict[int, ImageAttention] | None:
        """Per-video-block K/V and masks for this pass, or None when there is no video to attend."""
        if aggregated is None and (video is not None or video_features is not None):
            if video_features is None:
                video_features = self.frame_features(video, video_ratio_ids)
            aggregated = self.aggregate(video_features, frame_mask)
        if aggregated is not None:
            video_tokens, valid = aggregated
            kv, group_valid = self.video_kv(video_tokens), valid[:, None]  # one video per row
            spans = ImageSpans.start(tokens.shape[0], 1, tokens.device)
        elif cache is not None and getattr(cache, "video_kv", None) is not None:
            kv, group_valid, spans = cache.video_kv, cache.group_valid, cache.video_spans
        else:
            return None
        attend, spans = image_attendance(tokens, self.video_token_id, spans)  # [B, T, 1]
        if cache is not None:
            cache.video_kv, cache.group_valid, cache.video_spans = kv, group_valid, spans
        B, T, _ = attend.shape
        n_latents = self.resampler_config.n_latents
        mask = (attend[..., None] & group_valid[:, None]).repeat_interleave(n_latents, dim=-1)
        mask = mask.view(B, T, -1)  # [B, T, G·n_latents]
        row = mask.any(-1, keepdim=True)
        mask = (mask | ~row)[:, None]
        return {i: ImageAttention(kv[i], mask, row.to(dtype)) for i in self.video_schedule}

    # --- forward --------------------------------------------------------------------------
    def forward(self, tokens: Tensor, *, images: Tensor | None = None, ratio_ids: Tensor | None = None,
                video: Tensor | None = None, video_ratio_ids: Tensor | None = None,
                video_features: Tensor | None = None, frame_mask: Tensor | None = None,
                aggregated: tuple[Tensor, Tensor] | None = None, positions: Tensor | None = None,
                cache: VideoFusionCache | None = None, logits_at: Tensor | None = None) -> Tensor:
        """Logits [B, T, V] ([n, V] at the positions `logits_at` [B, T] marks, as in `Transformer`).

        video [B, F, tiles, 3, t, t] with video_ratio_ids [B, F] (one clip per row, its
        `<|video|>` token in `tokens`) and optional frame_mask [B, F] (True = real frame), or instead
        of video the frozen `frame_features(video, ...)` computed earlier, video_features [B, F, S,
        dim], or the `aggregate(video_features, frame_mask)` of them, `aggregated` (a training loss
        that also reads the latents runs the aggregator once); images as in `FusionModel.forward`.
        Decoding steps pass no media and reuse the cache.
        """
        hidden = self.hidden_states(tokens, images=images, ratio_ids=ratio_ids, video=video,
                                    video_ratio_ids=video_ratio_ids, video_features=video_features,
                                    frame_mask=frame_mask, aggregated=aggregated, positions=positions, cache=cache,
                                    outputs_at=logits_at)
        return logits_where(self.output, hidden, logits_at)

    def hidden_states(self, tokens: Tensor, *, images: Tensor | None = None,
                      ratio_ids: Tensor | None = None, video: Tensor | None = None,
                      video_ratio_ids: Tensor | None = None, video_features: Tensor | None = None,
                      frame_mask: Tensor | None = None, aggregated: tuple[Tensor, Tensor] | None = None,
                      positions: Tensor | None = None, cache: VideoFusionCache | None = None,
                      embeds: Tensor | None = None, outputs_at: Tensor | None = None) -> Tensor:
        """The final-normed hidden states [B, T, dim]; a video block runs before the image block
        of its layer. `embeds` and `outputs_at` as in `FusionModel.hidden_states`."""
        h = self.embed(tokens) if embeds is None else embeds
        text_cache = cache.text if cache is not None else None
        ctx = self.text_model.attention_context(h, positions=positions, cache=text_cache, outputs_at=outputs_at)
        image = self.image_attention(tokens, images, ratio_ids, cache, h.dtype)
        clip = self.video_attention(tokens, video, video_ratio_ids, video_features, frame_mask, cache, h.dtype,
                                    aggregated)
        for i, layer in enumerate(self.layers):
            if clip is not None and i in clip:
                h = self.video_cross_attention_layers[str(i)](h, clip[i], ctx.rows)
            if image is not None and i in image:
                h = self.cross_attention_layers[str(i)](h, image[i], ctx.rows)
            h = layer(h, ctx)
        if text_cache is not None:
            text_cache.advance(h.shape[1])
        return self.norm(h)


def _block(c: TextConfig) -> CrossAttentionBlock:
    block = CrossAttentionBlock(c.dim, c.n_heads, c.n_kv_heads, c.ffn_hidden_dim, c.norm_eps)
    for m in block.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
    return block


def build_video_fusion_model(image_model: FusionModel, resampler: ResamplerConfig, *,
                             word_head: bool = False) -> VideoFusionModel:
    """Add a fresh aggregator (at the LM width: it merges projected frame tokens) and video blocks
    on `video_schedule` to `image_model`, sharing its modules and copying its new-token rows;
    every video gate starts at zero, so logits equal the image model's. `word_head` adds the
    training-only caption-word head (`video.word_head`)."""
    c = image_model.config
    if resampler.dim != c.dim:
        raise ValueError(f"resampler dim {resampler.dim} must equal the LM width {c.dim}")
    blocks = {int(i): b for i, b in image_model.cross_attention_layers.items()}
    model = VideoFusionModel(image_model.text_model, image_model.vision_encoder, image_model.vision_projection,
                             blocks, build_aggregator(resampler),
                             {i: _block(c) for i in video_schedule(image_model.schedule)},
                             image_model.fusion_config, CaptionWordHead(c.dim) if word_head else None)
    model.learnable_embedding.load_state_dict(image_model.learnable_embedding.state_dict())
    return model


def from_spec(spec: dict[str, Any]) -> VideoFusionModel:
    """An untrained video model of the shape `VideoFusionModel.spec()` describes."""
    lm = Transformer(TextConfig.from_dict(spec["text"]))
    image_model = build_fusion_model(lm, VisionConfig.from_dict(spec["vision"]), FusionConfig(**spec["fusion"]))
    return build_video_fusion_model(image_model, ResamplerConfig.from_dict(spec["resampler"]),
                                    word_head=bool(spec.get("word_head", False)))


__all__ = ["VIDEO_MODULES", "VIDEO_EVERY", "video_schedule", "VideoFusionCache", "VideoFusionModel",
           "build_video_fusion_model", "from_spec"]
