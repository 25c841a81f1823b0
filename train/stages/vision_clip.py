"""`herd train vision-clip`: contrastive pretraining of the image encoder with a small text tower on
image–caption shards (llama3-spec §3.1; DESIGN `vision-clip`).

Each step encodes a batch of images (tiled, `vision.transforms`) and one caption per image
(demo tokenizer, `data.tokenizer`) and minimises open_clip's symmetric InfoNCE loss with a
learnable temperature (`vision.clip.ClipModel`). Validation reports the loss and zero-shot
retrieval recall@1/5 in both directions over the validation images and all their captions.
The checkpoint's encoder is what `vision-adapter` starts from (`vision.encoder_init`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adapters.policies import POLICIES, apply_policy
from train.stage_configs import VisionClipConfig
from train.distributed import DistEnv
from train.stages.image_batches import CaptionBatcher, caption_batch, image_reader, pad_token_rows, vision_config
from train.stages.text_common import load_tokenizer_for, shard_list, tokenizer_file
from train.unit import StepOutput
from vision.clip import ClipModel, Regions, TextTower, retrieval_recall
from vision.encoder import build_encoder
from vision.transforms import ImageTransform


class VisionClipUnit:
    """Image encoder + text tower + temperature all train (policy "vision-clip")."""

    def __init__(self, model: ClipModel, train_loader: CaptionBatcher, val_shards: list[Path] | None,
                 tokenizer_path: Path | None, region_weight: float = 0.0):
        self.model, self.train_loader, self.val_shards = model, train_loader, val_shards
        self.tokenizer_path, self.region_weight = tokenizer_path, region_weight

    def blocks(self) -> list[nn.Module]:
        return [*self.model.encoder.layers, *self.model.encoder.global_layers, *self.model.text.layers]

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        regions = None
        if self.region_weight and "region_image" in batch:
            regions = Regions(batch["region_image"], batch["region_mask"], batch["region_tokens"], batch["region_phrase"])
        losses = model(batch["pixels"], batch["ratio_ids"], batch["tokens"], regions)
        metrics = {"temperature": float(1 / self.model.logit_scale.detach().exp())}
        loss = losses["clip"]
        if "region" in losses:
            metrics.update(clip_loss=float(losses["clip"].detach()), region_loss=float(losses["region"].detach()))
            loss = loss + self.region_weight * losses["region"]
        return StepOutput(loss=loss, tokens=int(batch["tokens"].numel()), metrics=metrics)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """Mean contrastive loss over up to `max_batches` validation batches, and retrieval recall
        of those images against every caption they carry (chance R@k ≈ k / images)."""
        if self.val_shards is None:
            return {}
        loader = self.train_loader
        device = next(self.model.parameters()).device
        reader = image_reader(self.val_shards, rank=0, world_size=1, seed=0, epochs=1)  # a fixed mix of sources
        losses, images, texts, owner = [], [], [], []
        pad, max_tiles = loader.tokenizer.pad_id, loader.transform.max_tiles
        for _ in range(max_batches):
            samples = [s for _, s in zip(range(loader.batch_size), reader)]
            if len(samples) < 2:  # a contrastive loss needs negatives
                break
            tiles = [loader.transform(s["image"]) for s in samples]
            first = [loader.caption_tokens(s["json"]["captions"][0]) for s in samples]
            batch = {k: v.to(device) for k, v in caption_batch(tiles, first, pad, max_tiles).items()}
            losses.append(float(self.model.loss(batch["pixels"], batch["ratio_ids"], batch["tokens"])))
            first_index = sum(map(len, images))
            for i, s in enumerate(samples):
                captions = [loader.caption_tokens(c) for c in s["json"]["captions"]]
                owner += [first_index + i] * len(captions)
                texts.append(self.model.encode_text(pad_token_rows(captions, pad).to(device)))
            images.append(self.model.encode_image(batch["pixels"], batch["ratio_ids"]))
        if not losses:
            return {}
        n_images = sum(map(len, images))
        recall = retrieval_recall(torch.cat(images), torch.cat(texts), torch.tensor(owner, device=device))
        return {"val_loss": sum(losses) / len(losses), **recall, "chance_R@1": 1 / n_images,
                "chance_R@5": min(1.0, 5 / n_images)}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": self.model.spec(), "parents": []}


def build_clip_model(config: VisionClipConfig, vocab_size: int, pad_id: int) -> ClipModel:
    c = config.clip
    encoder = build_encoder(vision_config(c.vision_preset, tile_size=c.tile_size, max_tiles=c.max_tiles))
    text = TextTower(vocab_size=vocab_size, embed_dim=c.embed_dim, width=c.text_width, n_layers=c.text_layers,
                     context_length=c.context_length, pad_id=pad_id)
    return ClipModel(encoder, text, c.embed_dim)


def build(config: VisionClipConfig, env: DistEnv) -> VisionClipUnit:
    tokenizer = load_tokenizer_for(config)
    model = build_clip_model(config, tokenizer.vocab_size, tokenizer.pad_id).to(env.device)
    apply_policy(model, POLICIES["vision-clip"](model))
    vc = model.encoder.config
    d = config.data
    loader = CaptionBatcher(shard_list(config, d.train_split), tokenizer, ImageTransform(vc.tile_size, vc.max_tiles),
                            context_length=config.clip.context_length, batch_size=d.batch_size, rank=env.rank,
                            world_size=env.world_size, seed=config.run.seed,
                            region_patch=vc.patch_size if config.clip.region_weight else 0)
    val = shard_list(config, d.val_split) if d.val_split else None
    return VisionClipUnit(model, loader, val, tokenizer_file(config), config.clip.region_weight)


__all__ = ["VisionClipUnit", "build_clip_model", "build"]
