"""`herd train text-longctx`: long-context extension by continued pretraining (llama3-spec §1.4).

From a pretrained checkpoint (`model.init`, trained at `data.seq_len`), the stage sets RoPE θ and
the Llama 3.1 frequency scaling (original length = `data.seq_len`), then runs one phase per entry
of `longctx.lengths` (e.g. 1024, 4096) on packed long documents (whole chapters) with the
document mask. A phase ends when short-context validation perplexity (the pre-extension length,
the same batches) is back within `recover_tolerance` of the pre-extension model's — the paper's
"short-context evaluations fully recover" — checked at every evaluation after `min_steps`; after
`max_steps` it moves on anyway and records that it did not recover. The stage ends after the last
phase (`finished()`), so `train.steps` is only an upper bound.

Batches: {"tokens", "doc_ids"} [B, T+1] with B·T = `tokens_per_step`, T the phase's length.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from train.checkpoint import read_meta
from train.distributed import DistEnv
from train.stage_configs import LongContextConfig
from train.stages.text_common import (IGNORE, build_lm, cross_entropy, load_tokenizer_for, shard_list,
                                      tokenizer_file)
from train.stages.text_mix import at_least_chars, filtered_loader
from train.stages.text_pretrain import PretrainUnit, next_token_batch


class PhasedLoader:
    """Packed batches whose length is the current phase's; `advance()` moves to the next phase."""

    def __init__(self, lengths: list[int], make: Callable[[int], Any]):
        self.lengths, self.make = lengths, make
        self.phase, self.steps_in_phase = 0, 0
        self.current = make(lengths[0])

    @property
    def length(self) -> int:
        return self.lengths[self.phase]

    def advance(self) -> bool:
        """Next phase; False when the last one is done."""
        if self.phase + 1 >= len(self.lengths):
            return False
        self.phase, self.steps_in_phase = self.phase + 1, 0
        self.current = self.make(self.length)
        return True

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        source, batches = None, None
        while True:
            if source is not self.current:  # a new phase began since the last batch
                source, batches = self.current, iter(self.current)
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(source)
                continue
            self.steps_in_phase += 1
            yield batch

    def state_dict(self) -> dict:
        return {"phase": self.phase, "steps_in_phase": self.steps_in_phase, "inner": self.current.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.phase, self.steps_in_phase = int(state["phase"]), int(state["steps_in_phase"])
        self.current = self.make(self.length)
        self.current.load_state_dict(state["inner"])


@torch.no_grad()
def mean_loss(model: nn.Module, batches, max_batches: int) -> float:
    """Token-weighted next-token CE over up to `max_batches` packed batches."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        inputs, doc_ids, targets = next_token_batch({k: v.to(device) for k, v in batch.items()})
        n = int((targets != IGNORE).sum())
        total += float(cross_entropy(model(inputs, doc_ids=doc_ids), targets)) * n
        count += n
    return total / max(count, 1)


class LongContextUnit:
    """Pretrain loss on phased long batches; evaluation drives the phases."""

    def __init__(self, unit: PretrainUnit, config: LongContextConfig, baseline: float, make_short_val,
                 make_long_val):
        self.unit, self.config, self.baseline = unit, config, baseline
        self.model, self.train_loader, self.tokenizer_path = unit.model, unit.train_loader, unit.tokenizer_path
        self.make_short_val, self.make_long_val = make_short_val, make_long_val
        self.phases: list[dict] = []
        self.done = False

    def __getattr__(self, name: str):
        return getattr(self.unit, name)

    def finished(self) -> bool:
        return self.done

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        lc, loader = self.config.longctx, self.train_loader
        short = mean_loss(model, self.make_short_val(), max_batches)
        long = mean_loss(model, self.make_long_val(loader.length), max_batches)
        ratio = math.exp(short - self.baseline)  # perplexity ratio to the pre-extension model
        recovered = ratio <= 1 + lc.recover_tolerance
        steps = loader.steps_in_phase // self.config.train.grad_accum
        metrics = {"val_loss": short, "short_ppl_ratio": ratio, "long_val_loss": long,
                   "seq_len": float(loader.length), "phase": float(loader.phase), "recovered": float(recovered)}
        if not self.done and ((steps >= lc.min_steps and recovered) or steps >= lc.max_steps):
            self.phases.append({"length": loader.length, "steps": steps, "short_ppl_ratio": ratio,
                                "recovered": recovered, "long_val_loss": long})
            self.done = not loader.advance()
        return metrics

    def checkpoint_meta(self) -> dict[str, Any]:
        return {**self.unit.checkpoint_meta(),
                "longctx": {"baseline_short_val_loss": self.baseline, "phases": self.phases, "done": self.done}}


def extended_model(model: nn.Module, config: LongContextConfig) -> nn.Module:
    """The same weights with RoPE θ, Llama 3.1 scaling and max_seq_len for the longest phase."""
    from text.config import RopeScaling
    from text.model import Transformer

    lc = config.longctx
    scaling = (RopeScaling(factor=lc.rope_factor, original_max_seq_len=config.data.seq_len)
               if lc.rope_factor > 1 else None)
    new = dataclasses.replace(model.config, rope_theta=lc.rope_theta, rope_scaling=scaling,
                              max_seq_len=max(max(lc.lengths), model.config.max_seq_len))
    out = Transformer(new).to(next(model.parameters()).device)
    out.load_state_dict(model.state_dict(), strict=True)
    return out.train()


def build(config: LongContextConfig, env: DistEnv) -> LongContextUnit:
    from data.packing import PackedTextLoader
    from train.state import resolve_resume

    lc, d = config.longctx, config.data
    if not config.model.init:
        raise ValueError("text-longctx extends a pretrained model: set model.init")
    if not lc.lengths or any(b <= a for a, b in zip([d.seq_len, *lc.lengths], lc.lengths)):
        raise ValueError(f"longctx.lengths {lc.lengths} must grow from data.seq_len {d.seq_len}")
    tokenizer = load_tokenizer_for(config)
    base, parents = build_lm(config, env, tokenizer.vocab_size)
    common = dict(rank=env.rank, world_size=env.world_size)

    def short_val():
        return PackedTextLoader(shard_list(config, d.val_split), tokenizer, seq_len=d.seq_len,
                                batch_size=d.batch_size, seed=0, **common)

    def long_val(length: int):
        return filtered_loader(shard_list(config, d.val_split), tokenizer, keep=at_least_chars(lc.min_doc_chars),
                               seq_len=length, batch_size=1, **common)

    def train_batches(length: int):
        return filtered_loader(shard_list(config, d.train_split), tokenizer, keep=at_least_chars(lc.min_doc_chars),
                               seq_len=length, batch_size=max(1, lc.tokens_per_step // length),
                               seed=config.run.seed, **common)

    base.eval()
    baseline = mean_loss(base, short_val(), config.train.eval_batches)
    model = extended_model(base, config)
    unit = PretrainUnit(model, PhasedLoader(list(lc.lengths), train_batches), None, tokenizer_file(config), parents)
    out = LongContextUnit(unit, config, baseline, short_val, long_val)
    resumed = resolve_resume(config.checkpoint.resume, Path(config.run.dir))
    if resumed is not None:  # the phase history so far (the loader's own state restores the phase)
        history = read_meta(resumed).get("longctx", {})
        out.phases, out.done = list(history.get("phases", [])), bool(history.get("done", False))
    return out


__all__ = ["LongContextUnit", "PhasedLoader", "extended_model", "mean_loss", "build"]
