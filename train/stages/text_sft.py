"""`herd train text-sft`: supervised finetuning on Llama 3 chat-format dialogues, cross-entropy on
the assistant's tokens only (llama3-spec §1.6 "SFT"). Starts from a pretrained checkpoint
(`model.init`); data from `data/build_chat.py` (WordNet Q&A, fortunes, continuations, and the
"Repeat after me:" copy tasks later stages rely on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from train.checkpoint import text_model_meta
from train.copy_curriculum import CopyCurriculum
from train.stage_configs import CopySection, SFTConfig
from train.distributed import DistEnv
from train.stages.chat_data import DialogueBatcher
from train.stages.text_common import (build_lm, supervised_loss, load_tokenizer_for, masked_val_loss, shard_list,
                                      tokenizer_file, write_samples)
from train.unit import StepOutput


class SFTUnit:
    """The whole LM trains on masked next-token CE."""

    def __init__(self, model: nn.Module, train_loader, make_val_loader, tokenizer_path: Path | None,
                 parents: list[dict]):
        self.model, self.train_loader, self.make_val_loader = model, train_loader, make_val_loader
        self.tokenizer_path, self.parents = tokenizer_path, parents

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        return supervised_loss(lambda at: model(batch["tokens"][:, :-1], logits_at=at), batch["targets"])

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        if self.make_val_loader is None:
            return {}
        return masked_val_loss(self.make_val_loader(), lambda b: model(b["tokens"][:, :-1]),
                               next(self.model.parameters()).device, max_batches)

    def write_samples(self, path: Path) -> None:
        write_samples(self.model, self.tokenizer_path, path, chat=True)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": text_model_meta(self.model), "parents": self.parents}


def build(config: SFTConfig, env: DistEnv) -> SFTUnit:
    tokenizer = load_tokenizer_for(config)
    model, parents = build_lm(config, env, tokenizer.vocab_size)
    d = config.data

    def batcher(split: str, seed: int, **kw) -> DialogueBatcher:
        return DialogueBatcher(shard_list(config, split), tokenizer, seq_len=d.seq_len, batch_size=d.batch_size,
                               rank=env.rank, world_size=env.world_size, seed=seed,
                               mask_prompt=config.sft.mask_prompt, **kw)

    make_val = (lambda: batcher(d.val_split, 0, epochs=1, shuffle=False)) if d.val_split else None
    train = batcher(d.train_split, config.run.seed)
    if config.sft.copy_fraction:
        train = CopyCurriculum(train, ids=tokenizer.bos_id, seq_len=d.seq_len, batch_size=d.batch_size,
                               section=CopySection(fraction=config.sft.copy_fraction), seed=config.run.seed,
                               rank=env.rank)
    return SFTUnit(model, train, make_val, tokenizer_file(config), parents)


__all__ = ["SFTUnit", "build"]
