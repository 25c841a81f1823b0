"""Training: one generic loop (`train.loop`), one small unit per stage (`train.stages`),
typed configs, checkpoints and distributed setup.

Names load on first use, so `herd --help` (which imports `train.cli`) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"RunConfig": "train.config", "load_config": "train.config", "STAGES": "train.stages",
         "get_stage": "train.stages", "list_stages": "train.stages"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
