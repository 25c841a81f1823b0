"""AdamW and the learning-rate schedule (llama3-spec §1.3: linear warm-up, cosine decay; §1.5:
linear annealing to zero)."""

from __future__ import annotations

import math

import torch
from torch import nn

from train.config import OptimSection


def build_optimizer(model: nn.Module, config: OptimSection,
                    lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; matrices decay, vectors (norms) and embeddings do not.

    `lr_scales` maps a parameter-name pattern (a substring, e.g. "vision_encoder.") to a factor on
    the scheduled LR for the parameters whose names contain it (the first match wins); each group
    carries its factor as "lr_scale" (absent = 1), which the loop applies at every step.
    """
    lr_scales = lr_scales or {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = next((f for pattern, f in lr_scales.items() if pattern in name), 1.0)
        decays = not (p.ndim < 2 or "embedding" in name)
        groups.setdefault((scale, decays), []).append(p)
    if not groups:
        raise ValueError("the trainable set is empty: the stage's policy froze every parameter")
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0] != 1.0, kv[0][0], not kv[0][1]))
    # Unscaled groups carry no "lr_scale" key, so their optimizer state matches (and resumes)
    # checkpoints written before LR factors existed.
    return torch.optim.AdamW([{"params": params, "weight_decay": config.weight_decay if decays else 0.0,
                               **({"lr_scale": scale} if scale != 1.0 else {})}
                              for (scale, decays), params in ordered],
                             lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


def lr_at(step: int, total: int, config: OptimSection, progress: float | None = None) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`; `progress` in [0, 1], when
    given, replaces the decay's step-based progress (optim.horizon "minutes": the time spent)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    if progress is None:
        progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    progress = min(1.0, progress)
    if config.schedule == "cosine":
        floor = config.lr * config.min_lr_ratio
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return config.lr * (1 - progress)
    raise ValueError(f"optim.schedule must be cosine, linear or constant, got {config.schedule!r}")


__all__ = ["build_optimizer", "lr_at"]
