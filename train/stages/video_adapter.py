"""`herd train video-adapter`: the temporal aggregator and the video cross-attention blocks learn
to caption clips while the LM and the whole image path stay frozen (llama3-spec §4, §7).

Starts from a `vision-adapter` checkpoint (`model.init`): its image model is wrapped by
`adapters.video_fusion.build_video_fusion_model`, which adds the video modules with zero gates.
For development `model.init` may also be a text LM (or empty: a random `model.preset` LM); a
random image path of `video.image_preset` is then built around it. A `video-adapter` checkpoint
continues as it is. Data: clip–caption shards from `data/build_video.py`, see
`train/stages/video_batches.py` for the dialogue, the frames and what happens to bad clips.

With `video.word_weight` > 0 the loss adds the caption-word objective of `video.word_head` on the
aggregator's latents (each caption word a direct target, the motion word included).

The image encoder and projection are frozen and clips are not augmented, so with
`video.cache_features` (the default) each clip's frame features are computed once, on its first
read, and kept in memory (`video_batches.FrameFeatures`): later epochs skip decoding and encoding,
which at tiny size are about half of a step (benchmarks/video_step.py). Batches are read in
the training process, so there is one cache per rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adapters.fusion import FusionConfig, FusionModel, build_fusion_model
from adapters.policies import apply_policy, video_adapter_policy
from adapters.video_fusion import VideoFusionModel, build_video_fusion_model
from train.stage_configs import VideoAdapterConfig
from train.distributed import DistEnv
from train.stages.text_common import (build_lm, supervised_loss, load_tokenizer_for, media_val_loss, parent_entry,
                                      resolve_checkpoint, scale_branches_from_batch, shard_list, tokenizer_file)
from train.stages.video_batches import FrameFeatures, VideoBatcher
from train.unit import StepOutput
from video.word_head import CaptionWordHead, caption_word_loss


class VideoAdapterUnit:
    """Masked next-token CE on captions, with one clip attached per row."""

    def __init__(self, model: VideoFusionModel, train_loader, make_val_loader, tokenizer_path: Path | None,
                 parents: list[dict], lr_scales: dict[str, float], word_weight: float = 0.0):
        self.model, self.train_loader, self.make_val_loader = model, train_loader, make_val_loader
        self.tokenizer_path, self.parents = tokenizer_path, parents
        self._lr_scales, self.word_weight = lr_scales, word_weight

    def lr_scales(self) -> dict[str, float]:
        return self._lr_scales

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}

    @staticmethod
    def logits(model: nn.Module, batch: dict[str, Tensor], at: Tensor | None = None) -> Tensor:
        return model(batch["tokens"][:, :-1], video=batch.get("video"), video_ratio_ids=batch.get("video_ratio_ids"),
                     video_features=batch.get("video_features"), logits_at=at)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        if not self.word_weight:
            return supervised_loss(lambda at: self.logits(model, batch, at), batch["targets"])
        features = batch.get("video_features")
        if features is None:  # the image path is frozen: no graph through it
            with torch.no_grad():
                features = self.model.frame_features(batch["video"], batch.get("video_ratio_ids"))
        # One aggregator pass feeds both losses (it was ~a fifth of the tiny step once more).
        aggregated = self.model.aggregate(features)
        out = supervised_loss(lambda at: model(batch["tokens"][:, :-1], aggregated=aggregated, logits_at=at),
                              batch["targets"])
        words = caption_word_loss(self.model.caption_word_logits(aggregated[0]), batch["targets"])
        out.metrics["word_loss"] = float(words.detach())
        return StepOutput(loss=out.loss + self.word_weight * words, tokens=out.tokens, metrics=out.metrics)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """val_loss, and video_gain: the loss with every sample shown the next sample's clip, minus it."""
        if self.make_val_loader is None:
            return {}
        return media_val_loss(self.make_val_loader(), lambda b: self.logits(model, b), swap_clips,
                              next(self.model.parameters()).device, max_batches, "video_gain")

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": self.model.spec(), "parents": self.parents}


def swap_clips(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch with every sample's clip replaced by the next sample's."""
    keys = ("video", "video_ratio_ids", "video_features")
    return {k: t.roll(1, 0) if k in keys and t is not None else t for k, t in batch.items()}


def build_model(config: VideoAdapterConfig, env: DistEnv, vocab_size: int) -> tuple[VideoFusionModel, list[dict]]:
    """The video model on env.device with the video-adapter trainable set applied."""
    from train.models import load_model
    from video.config import create_config as resampler_config
    from vision.config import create_config as vision_config

    parents: list[dict] = []
    if config.model.init:
        ckpt = resolve_checkpoint(config.model.init)
        model, _ = load_model(ckpt, device=env.device)
        parents = [parent_entry(ckpt)]
    else:
        model, _ = build_lm(config, env, vocab_size)
    if not isinstance(model, FusionModel):  # a text LM: development with a random image path
        model = build_fusion_model(model, vision_config(config.video.image_preset), FusionConfig())
    if not isinstance(model, VideoFusionModel):
        encoder = model.vision_encoder.config  # every frame token gets its place: tiles × tokens per tile
        model = build_video_fusion_model(model, resampler_config(
            config.video.preset, dim=model.config.dim, max_tokens=encoder.max_tiles * encoder.tokens_per_tile,
            motion_dim=config.video.motion_dim, patch_grid=encoder.tile_size // encoder.patch_size))
    if config.video.word_weight > 0 and model.video_word_head is None:  # a new run, or a video model without one
        model.video_word_head = CaptionWordHead(model.config.dim)
    if model.config.vocab_size != vocab_size:
        raise ValueError(f"model.init has vocab_size {model.config.vocab_size}, the tokenizer {vocab_size}")
    model = model.to(env.device).train()
    apply_policy(model, video_adapter_policy(model))
    return model, parents


def build(config: VideoAdapterConfig, env: DistEnv) -> VideoAdapterUnit:
    tokenizer = load_tokenizer_for(config)
    model, parents = build_model(config, env, tokenizer.vocab_size)
    d, v = config.data, config.video
    frames = v.frames or model.resampler_config.frames_per_group
    features = FrameFeatures(model) if v.cache_features else None

    def batcher(split: str, seed: int, **kw) -> VideoBatcher:
        return VideoBatcher(shard_list(config, split), tokenizer, prompts=v.prompts, num_frames=frames,
                            tile_size=model.vision_encoder.config.tile_size, batch_size=d.batch_size,
                            backend=v.backend, features=features, tasks=v.tasks, rank=env.rank,
                            world_size=env.world_size, seed=seed, **kw)

    make_val = (lambda: batcher(d.val_split, 0, epochs=1, shuffle=False)) if d.val_split else None
    if v.match_branch_scale:
        blocks = {i: model.video_cross_attention_layers[str(i)] for i in model.video_schedule}
        scale_branches_from_batch(model.layers, blocks,
                                  batcher(d.train_split, config.run.seed + 1, epochs=1),
                                  lambda b: VideoAdapterUnit.logits(model, b), env.device)
    lr_scales = {".attn_gate.": v.gate_lr_scale, ".ffn_gate.": v.ffn_gate_lr_scale}
    return VideoAdapterUnit(model, batcher(d.train_split, config.run.seed), make_val, tokenizer_file(config),
                            parents, {k: f for k, f in lr_scales.items() if f != 1.0}, v.word_weight)


__all__ = ["VideoAdapterUnit", "build_model", "swap_clips", "build"]
