"""`herd train vision-adapter`: the image encoder, projection, gated cross-attention blocks and the
new token rows learn to caption and answer questions about images while the LM stays frozen
(llama3-spec §3.2, §7; DESIGN `vision-adapter`).

The LM comes from `model.init` (a `text-sft` run), the encoder from `vision.encoder_init` (a
`vision-clip` run) when given. Samples are chat turns "user: <|image|> PROMPT → assistant:
ANSWER" from image shards (`train.stages.image_batches.ImageChatBatcher`), packed up to
`vision.pack` to a row as separate documents; the loss is CE on the answer tokens only. The trainable set is `adapters.policies.POLICIES["vision-adapter"]`; every
LM tensor is frozen and the loop verifies its checksums at each checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from adapters.fusion import FusionConfig, FusionModel, build_fusion_model
from adapters.policies import POLICIES, apply_policy
from train.stage_configs import VisionAdapterConfig
from train.distributed import DistEnv
from train.stages.image_batches import ImageChatBatcher, vision_config
from train.stages.text_common import (build_lm, supervised_loss, load_tokenizer_for, media_val_loss, parent_entry,
                                      scale_branches_from_batch, shard_list, tokenizer_file)
from train.unit import StepOutput
from vision.transforms import ImageTransform

SAMPLE_IMAGES = 6
"""Validation images captioned into samples.txt at the end of a run."""


class VisionAdapterUnit:
    """Masked next-token CE through the fused model; only the adapter trains."""

    def __init__(self, model: FusionModel, train_loader: ImageChatBatcher, make_val_loader, tokenizer_path: Path | None,
                 parents: list[dict], prompt: str, lr_scales: dict[str, float]):
        self.model, self.train_loader, self.make_val_loader = model, train_loader, make_val_loader
        self.tokenizer_path, self.parents, self.prompt = tokenizer_path, parents, prompt
        self._lr_scales = lr_scales

    def lr_scales(self) -> dict[str, float]:
        return self._lr_scales

    def blocks(self) -> list[nn.Module]:
        m = self.model
        return [*m.layers, *m.cross_attention_layers.values(), *m.vision_encoder.layers,
                *m.vision_encoder.global_layers]

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}  # the frozen LM is inside `model`: its tensors are checksummed as frozen parameters

    @staticmethod
    def logits(model: nn.Module, batch: dict[str, Tensor], at: Tensor | None = None) -> Tensor:
        doc_ids = batch["doc_ids"][:, :-1] if "doc_ids" in batch else None
        return model(batch["tokens"][:, :-1], images=batch["images"], ratio_ids=batch["ratio_ids"],
                     doc_ids=doc_ids, logits_at=at)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        return supervised_loss(lambda at: self.logits(model, batch, at), batch["targets"])

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """val_loss, and image_gain: the loss with every sample shown the next sample's image, minus it."""
        if self.make_val_loader is None:
            return {}
        return media_val_loss(self.make_val_loader(), lambda b: self.logits(model, b), swap_images,
                              next(self.model.parameters()).device, max_batches, "image_gain")

    def write_samples(self, path: Path) -> None:
        """Greedy captions of a few validation images beside their references."""
        from eval.caption import greedy_captions
        from text.tokenizer import load_tokenizer

        if self.make_val_loader is None or self.tokenizer_path is None:
            return
        reader = self.make_val_loader().reader
        samples = [s for _, s in zip(range(SAMPLE_IMAGES), reader)]
        tiles = [self.train_loader.transform(s["image"]) for s in samples]
        was_training = self.model.training
        captions = greedy_captions(self.model.eval(), load_tokenizer(self.tokenizer_path), tiles, self.prompt)
        self.model.train(was_training)
        path.write_text("\n".join(f"### {s['key']}\nreference: {s['json']['captions'][0]}\ngenerated: {c}\n"
                                  for s, c in zip(samples, captions)))

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": self.model.spec(), "parents": self.parents}


def swap_images(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch with every sample's image(s) replaced by the next sample's."""
    return {**batch, "images": batch["images"].roll(1, 0), "ratio_ids": batch["ratio_ids"].roll(1, 0)}


def load_encoder_init(config: VisionAdapterConfig) -> tuple[nn.Module, dict]:
    """The `vision-clip` model named by vision.encoder_init and its parent entry."""
    from train.checkpoint import resolve_checkpoint
    from train.models import load_model

    v = config.vision
    if v.tile_size or v.max_tiles:
        raise ValueError("vision.tile_size/max_tiles must be 0 with vision.encoder_init: the encoder's shape "
                         "comes from that checkpoint")
    ckpt = resolve_checkpoint(v.encoder_init)
    clip, meta = load_model(ckpt)
    if meta["model"]["arch"] != "clip":
        raise ValueError(f"vision.encoder_init {v.encoder_init}: expected a vision-clip checkpoint, "
                         f"found arch {meta['model']['arch']!r}")
    return clip, parent_entry(ckpt)


def build_fused(config: VisionAdapterConfig, env: DistEnv, vocab_size: int) -> tuple[FusionModel, list[dict]]:
    """The frozen LM (model.init) wrapped with the image adapter, encoder from encoder_init if set."""
    v = config.vision
    lm, parents = build_lm(config, env, vocab_size)
    if v.encoder_init:
        clip, parent = load_encoder_init(config)
        fused = build_fusion_model(lm, clip.encoder.config, FusionConfig(cross_attention_every=v.cross_attention_every))
        fused.vision_encoder.load_state_dict(clip.encoder.state_dict(), strict=True)
        parents.append(parent)
    else:
        vc = vision_config(v.preset, tile_size=v.tile_size, max_tiles=v.max_tiles)
        fused = build_fusion_model(lm, vc, FusionConfig(cross_attention_every=v.cross_attention_every))
    return fused.to(env.device).train(), parents


def build(config: VisionAdapterConfig, env: DistEnv) -> VisionAdapterUnit:
    tokenizer = load_tokenizer_for(config)
    model, parents = build_fused(config, env, tokenizer.vocab_size)
    apply_policy(model, POLICIES["vision-adapter"](model))
    vc, d, v = model.vision_encoder.config, config.data, config.vision
    transform = ImageTransform(vc.tile_size, vc.max_tiles)

    def batcher(split: str, seed: int, **kw) -> ImageChatBatcher:
        return ImageChatBatcher(shard_list(config, split), tokenizer, transform, seq_len=d.seq_len,
                                tasks=v.tasks, describe=v.prompt, captions=v.captions, batch_size=d.batch_size,
                                rank=env.rank, world_size=env.world_size, seed=seed, **kw)

    make_val = (lambda: batcher(d.val_split, 0, epochs=1)) if d.val_split else None
    if v.match_branch_scale:
        scale_branches_from_batch(model.layers, {i: model.cross_attention_layers[str(i)] for i in model.schedule},
                                  batcher(d.train_split, config.run.seed + 1, epochs=1),
                                  lambda b: VisionAdapterUnit.logits(model, b), env.device)
    lr_scales = {".attn_gate.": v.gate_lr_scale, ".ffn_gate.": v.ffn_gate_lr_scale,
                 "vision_encoder.": v.encoder_lr_scale}
    # Only training packs: validation keeps a sample per row, so that `swap_images` swaps whole samples.
    return VisionAdapterUnit(model, batcher(d.train_split, config.run.seed, pack=v.pack), make_val, tokenizer_file(config),
                             parents, v.prompt, {k: f for k, f in lr_scales.items() if f != 1.0})


__all__ = ["VisionAdapterUnit", "build_fused", "load_encoder_init", "swap_images", "build"]
