"""What a stage is: a small unit that says what one step computes (STYLE.md point 9).

The generic loop (`train/loop.py`) owns everything about how steps run — accumulation,
clipping, precision, logging, validation, checkpoints, distribution. A stage only provides a
`TrainUnit`: the model with its trainable set already chosen, the batches, the loss, and an
evaluation. Units are built by `build(config, env)` in their module under `train/stages/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from torch import Tensor, nn


class Loader(Protocol):
    """An iterable of batches whose position can be saved and restored exactly."""

    def __iter__(self) -> Iterator[dict[str, Tensor]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class StepOutput:
    """What a unit's loss returns for one micro-batch."""

    loss: Tensor
    """Scalar to minimise (mean over this micro-batch's supervised tokens)."""
    tokens: int
    """Tokens processed by the forward pass (for tokens/s)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Extra scalars to log (averaged over micro-batches and ranks)."""


class TrainUnit(Protocol):
    """One training stage.

    Optional: `lr_scales() -> dict[str, float]`, parameter-name patterns whose LR is the
    scheduled LR times a factor (`train.optim.build_optimizer`).
    """

    model: nn.Module
    """The stage's module. Parameters with requires_grad are the trainable set (chosen by the
    unit's policy); the rest are frozen and checksummed. Its state_dict is model.safetensors."""
    train_loader: Loader
    """Training batches for this rank."""
    tokenizer_path: Path | None
    """tokenizer.json copied into every checkpoint (None: none)."""

    def blocks(self) -> list[nn.Module]:
        """Repeated blocks: the units of FSDP sharding, activation checkpointing and compile."""
        ...

    def frozen_modules(self) -> dict[str, nn.Module]:
        """Frozen modules outside `model` (e.g. the DPO reference), verified like frozen params."""
        ...

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        """Forward one micro-batch through `model` (possibly DDP/FSDP-wrapped)."""
        ...

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """Validation metrics on this rank's share (the loop averages over ranks)."""
        ...

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra meta.json entries: at least "model" (how to rebuild it); "parents" if any."""
        ...


__all__ = ["Loader", "StepOutput", "TrainUnit"]
