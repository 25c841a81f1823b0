"""`herd train text-pretrain`: next-token cross-entropy on packed documents with the document
mask (llama3-spec §1.1, §1.3); validation perplexity on the held-out split (the novel).

Batches: {"tokens": [B, T+1], "doc_ids": [B, T+1]} from `data.packing.PackedTextLoader` (or the
synthetic loader). Inputs are tokens[:, :-1], targets tokens[:, 1:]; a target that starts a new
document is not predicted (its context is another document).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from train.checkpoint import text_model_meta
from train.copy_curriculum import CopyCurriculum
from train.stage_configs import PretrainConfig
from train.distributed import DistEnv
from train.stages.text_common import (IGNORE, build_lm, cross_entropy, shard_list, tokenizer_file,
                                      write_samples)
from train.synthetic import SyntheticTextLoader
from train.unit import StepOutput


def next_token_batch(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
    """(inputs [B, T], doc_ids [B, T] or None, targets [B, T]) from a packed [B, T+1] batch."""
    tokens = batch["tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    doc_ids = batch.get("doc_ids")
    if doc_ids is None:
        return inputs, None, targets
    targets[doc_ids[:, 1:] != doc_ids[:, :-1]] = IGNORE
    targets[doc_ids[:, 1:] < 0] = IGNORE  # padding (doc id -1)
    if "predict" in batch:  # copy rows (train/copy_curriculum.py): only their repeats are predictable
        targets[~batch["predict"][:, 1:]] = IGNORE
    return inputs, doc_ids[:, :-1], targets


class PretrainUnit:
    """The whole LM trains; nothing is frozen."""

    def __init__(self, model: nn.Module, train_loader, make_val_loader, tokenizer_path: Path | None,
                 parents: list[dict]):
        self.model = model
        self.train_loader = train_loader
        self.make_val_loader = make_val_loader
        self.tokenizer_path = tokenizer_path
        self.parents = parents

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        inputs, doc_ids, targets = next_token_batch(batch)
        logits = model(inputs, doc_ids=doc_ids)
        return StepOutput(loss=cross_entropy(logits, targets), tokens=inputs.numel())

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        if self.make_val_loader is None:
            return {}
        total, count = 0.0, 0
        for i, batch in enumerate(self.make_val_loader()):
            if i >= max_batches:
                break
            device = next(self.model.parameters()).device
            inputs, doc_ids, targets = next_token_batch({k: v.to(device) for k, v in batch.items()})
            logits = model(inputs, doc_ids=doc_ids)
            n = int((targets != IGNORE).sum())
            total += float(cross_entropy(logits, targets)) * n
            count += n
        return {"val_loss": total / max(count, 1)} if count else {}

    def write_samples(self, path: Path) -> None:
        write_samples(self.model, self.tokenizer_path, path, chat=False)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": text_model_meta(self.model), "parents": self.parents}


def build(config: PretrainConfig, env: DistEnv) -> PretrainUnit:
    d = config.data
    if d.synthetic:
        model, parents = build_lm(config, env, None)
        vocab = model.config.vocab_size

        def synthetic(seed: int):
            return SyntheticTextLoader(vocab_size=vocab, seq_len=d.seq_len, batch_size=d.batch_size,
                                       rank=env.rank, world_size=env.world_size, seed=seed)

        return PretrainUnit(model, synthetic(config.run.seed), lambda: synthetic(10_000 + config.run.seed),
                            None, parents)

    from data.packing import PackedTextLoader
    from text.tokenizer import load_tokenizer

    tok_path = tokenizer_file(config)
    if tok_path is None:
        raise ValueError("text-pretrain needs data.tokenizer (or model.init with a tokenizer)")
    tokenizer = load_tokenizer(tok_path)
    model, parents = build_lm(config, env, tokenizer.vocab_size)

    def loader(split: str, seed: int):
        return PackedTextLoader(shard_list(config, split), tokenizer, seq_len=d.seq_len,
                                batch_size=d.batch_size, rank=env.rank, world_size=env.world_size,
                                num_workers=d.num_workers, seed=seed)

    make_val = (lambda: loader(d.val_split, 0)) if d.val_split else None
    train = loader(d.train_split, config.run.seed)
    if config.copy.active:
        train = CopyCurriculum(train, ids=tokenizer.bos_id, seq_len=d.seq_len, batch_size=d.batch_size,
                               section=config.copy, seed=config.run.seed, rank=env.rank)
    return PretrainUnit(model, train, make_val, tok_path, parents)


__all__ = ["PretrainUnit", "build", "next_token_batch"]
