"""`herd train text-dpo`: direct preference optimisation as in llama3-spec §1.6 — β = 0.1, header
and termination tokens masked out of the loss for chosen and rejected responses, an NLL term with
coefficient 0.2 on the chosen response, and a frozen reference model (the SFT checkpoint).

    loss = −log σ(β·[(log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))])
           + nll_coef · NLL(y_c) / |y_c|
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train.checkpoint import load_text_model, text_model_meta
from train.stage_configs import DPOConfig
from train.distributed import DistEnv
from train.stages.chat_data import IGNORE, PreferenceBatcher
from train.stages.text_common import (build_lm, load_tokenizer_for, parent_entry, resolve_checkpoint,
                                      shard_list, token_logprobs, tokenizer_file)
from train.unit import StepOutput


def sequence_logprobs(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(summed log-prob of each row's response tokens [2B], response token counts [2B])."""
    targets = batch["targets"]
    logp = token_logprobs(model(batch["tokens"][:, :-1]), targets)
    return logp.sum(-1), (targets != IGNORE).sum(-1)


def dpo_loss(policy: Tensor, reference: Tensor, counts: Tensor, *, beta: float,
             nll_coef: float) -> tuple[Tensor, dict[str, float]]:
    """policy/reference: summed log-probs [2B] (chosen rows first); counts: response lengths [2B]."""
    B = policy.shape[0] // 2
    chosen_reward = beta * (policy[:B] - reference[:B])
    rejected_reward = beta * (policy[B:] - reference[B:])
    margin = chosen_reward - rejected_reward
    dpo = -F.logsigmoid(margin).mean()
    nll = -(policy[:B] / counts[:B].clamp(min=1)).mean()
    dpo_value, nll_value, margin = float(dpo.detach()), float(nll.detach()), margin.detach()
    chosen_reward, rejected_reward = chosen_reward.detach(), rejected_reward.detach()
    metrics = {"dpo_loss": dpo_value, "nll_chosen": nll_value, "reward_margin": float(margin.mean()),
               "reward_accuracy": float((margin > 0).float().mean()),
               "reward_chosen": float(chosen_reward.mean()), "reward_rejected": float(rejected_reward.mean())}
    return dpo + nll_coef * nll, metrics


class DPOUnit:
    """The policy LM trains; the reference LM is frozen (checksummed like any frozen tensor)."""

    def __init__(self, model: nn.Module, reference: nn.Module, train_loader, make_val_loader,
                 tokenizer_path: Path | None, parents: list[dict], *, beta: float, nll_coef: float):
        self.model, self.reference = model, reference
        self.train_loader, self.make_val_loader = train_loader, make_val_loader
        self.tokenizer_path, self.parents = tokenizer_path, parents
        self.beta, self.nll_coef = beta, nll_coef

    def blocks(self) -> list[nn.Module]:
        return list(self.model.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"reference": self.reference}

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        policy, counts = sequence_logprobs(model, batch)
        with torch.no_grad():
            reference, _ = sequence_logprobs(self.reference, batch)
        loss, metrics = dpo_loss(policy, reference, counts, beta=self.beta, nll_coef=self.nll_coef)
        return StepOutput(loss=loss, tokens=batch["targets"].numel(), metrics=metrics)

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        if self.make_val_loader is None:
            return {}
        device = next(self.model.parameters()).device
        sums: dict[str, float] = {}
        n = 0
        for i, batch in enumerate(self.make_val_loader()):
            if i >= max_batches:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            policy, counts = sequence_logprobs(model, batch)
            reference, _ = sequence_logprobs(self.reference, batch)
            loss, metrics = dpo_loss(policy, reference, counts, beta=self.beta, nll_coef=self.nll_coef)
            for k, v in {"val_loss": float(loss), **{f"val_{k}": v for k, v in metrics.items()}}.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        return {k: v / n for k, v in sums.items()} if n else {}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": text_model_meta(self.model), "parents": self.parents}


def build(config: DPOConfig, env: DistEnv) -> DPOUnit:
    if not (config.dpo.reference or config.model.init):
        raise ValueError("text-dpo needs model.init (the SFT checkpoint) or dpo.reference")
    tokenizer = load_tokenizer_for(config)
    model, parents = build_lm(config, env, tokenizer.vocab_size)
    ref_ckpt = resolve_checkpoint(config.dpo.reference or config.model.init)
    reference = load_text_model(ref_ckpt, device=env.device).requires_grad_(False)
    init_ckpt = resolve_checkpoint(config.model.init) if config.model.init else None
    if ref_ckpt != init_ckpt:
        parents = parents + [{**parent_entry(ref_ckpt), "role": "reference"}]
    d = config.data

    def batcher(split: str, seed: int, **kw) -> PreferenceBatcher:
        return PreferenceBatcher(shard_list(config, split), tokenizer, seq_len=d.seq_len, batch_size=d.batch_size,
                                 rank=env.rank, world_size=env.world_size, seed=seed,
                                 mask_special=config.dpo.mask_special, **kw)

    make_val = (lambda: batcher(d.val_split, 0, epochs=1, shuffle=False)) if d.val_split else None
    return DPOUnit(model, reference, batcher(d.train_split, config.run.seed), make_val, tokenizer_file(config),
                   parents, beta=config.dpo.beta, nll_coef=config.dpo.nll_coef)


__all__ = ["DPOUnit", "build", "dpo_loss", "sequence_logprobs"]
