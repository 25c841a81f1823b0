"""`herd train text-anneal`: the final phase of pretraining (llama3-spec §1.5). Starts from a
pretrain checkpoint (`model.init`), decays the LR linearly to zero (`optim.schedule = "linear"`,
over `anneal.tokens`), up-samples one high-quality source to a fixed share of every batch's rows,
and keeps the Polyak average (the plain mean) of the weights taken every `anneal.average_every`
steps and at the last step, written to `RUN/polyak/` as an ordinary text checkpoint.

Batches and loss are text-pretrain's: {"tokens", "doc_ids"} [B, T+1], next-token CE with the
document mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from train.checkpoint import META_FILE, load_tensors, read_meta, save_checkpoint, text_model_meta
from train.distributed import DistEnv
from train.stage_configs import AnnealConfig
from train.stages.text_common import build_lm, load_tokenizer_for, shard_list, tokenizer_file
from train.stages.text_mix import MixtureLoader, filtered_loader, source_is
from train.stages.text_pretrain import PretrainUnit

POLYAK_DIR = "polyak"


class PolyakAverage:
    """Running mean of a model's tensors, persisted after every update so a resumed run continues it."""

    def __init__(self, path: Path):
        self.path, self.count, self.steps = path, 0, []
        self.mean: dict[str, torch.Tensor] = {}
        if (path / META_FILE).is_file():
            meta = read_meta(path)["polyak"]
            self.count, self.steps = int(meta["count"]), list(meta["steps"])
            self.mean = {k: v.float() for k, v in load_tensors(path).items()}

    def update(self, model: torch.nn.Module, step: int) -> None:
        if step in self.steps:
            return  # already averaged before a resume
        self.count += 1
        for name, value in model.state_dict().items():
            value = value.detach().float().cpu()
            if name not in self.mean:
                self.mean[name] = value.clone()
            else:
                self.mean[name] += (value - self.mean[name]) / self.count
        self.steps.append(step)

    def save(self, model: torch.nn.Module, tokenizer: Path | None, parents: list[dict], finished: bool) -> None:
        meta = {"stage": "text-anneal", "step": self.steps[-1], "finished": finished, "model": text_model_meta(model),
                "parents": parents, "polyak": {"count": self.count, "steps": self.steps}}
        save_checkpoint(self.path, self.mean, meta, tokenizer=tokenizer)


class AnnealUnit:
    """A pretrain unit on mixed batches, with a Polyak average taken after chosen steps."""

    def __init__(self, unit: PretrainUnit, config: AnnealConfig, env: DistEnv):
        self.unit, self.config, self.env = unit, config, env
        self.model, self.train_loader, self.tokenizer_path = unit.model, unit.train_loader, unit.tokenizer_path
        self.average = PolyakAverage(Path(config.run.dir) / POLYAK_DIR)

    def __getattr__(self, name: str):
        return getattr(self.unit, name)

    def after_step(self, step: int) -> None:
        last = step >= self.config.train.steps
        if step % self.config.anneal.average_every and not last:
            return
        self.average.update(self.model, step)
        if self.env.is_main:
            self.average.save(self.model, self.tokenizer_path, self.unit.parents, finished=last)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**self.unit.checkpoint_meta(), "polyak": {"count": self.average.count, "steps": self.average.steps}}


def build(config: AnnealConfig, env: DistEnv) -> AnnealUnit:
    from data.packing import PackedTextLoader

    a, d = config.anneal, config.data
    tokenizer = load_tokenizer_for(config)
    model, parents = build_lm(config, env, tokenizer.vocab_size)
    extra_rows = round(a.upsample_weight * d.batch_size)
    if a.upsample_weight > 0 and extra_rows == 0:
        raise ValueError(f"anneal.upsample_weight {a.upsample_weight} of {d.batch_size} rows is 0 rows")
    shards = shard_list(config, d.train_split)
    common = dict(seq_len=d.seq_len, rank=env.rank, world_size=env.world_size, seed=config.run.seed)
    main = PackedTextLoader(shards, tokenizer, batch_size=d.batch_size - extra_rows, **common)
    loader = main
    if extra_rows:
        loader = MixtureLoader(main, filtered_loader(shards, tokenizer, keep=source_is(a.upsample_source),
                                                     batch_size=extra_rows, **common))

    def make_val():
        return PackedTextLoader(shard_list(config, d.val_split), tokenizer, seq_len=d.seq_len,
                                batch_size=d.batch_size, rank=env.rank, world_size=env.world_size, seed=0)

    unit = PretrainUnit(model, loader, make_val if d.val_split else None, tokenizer_file(config), parents)
    return AnnealUnit(unit, config, env)


__all__ = ["AnnealUnit", "PolyakAverage", "build", "POLYAK_DIR"]
