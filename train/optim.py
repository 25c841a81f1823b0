"""AdamW and the learning-rate schedule (llama3-spec §1.3: linear warm-up, cosine decay; §1.5:
linear annealing to zero)."""

from __future__ import annotations

import math

import torch
from torch import nn

from train.config import OptimSection


def build_optimizer(model: nn.Module, config: OptimSection) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; matrices decay, vectors (norms) and embeddings do not."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the trainable set is empty: the stage's policy froze every parameter")
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                             betas=(config.beta1, config.beta2), eps=config.eps)


def lr_at(step: int, total: int, config: OptimSection) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    if config.schedule == "cosine":
        floor = config.lr * config.min_lr_ratio
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return config.lr * (1 - progress)
    raise ValueError(f"optim.schedule must be cosine, linear or constant, got {config.schedule!r}")


__all__ = ["build_optimizer", "lr_at"]
