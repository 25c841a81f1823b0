"""The Llama 3 text model: configuration and presets, the decoder, tokenizer and chat format,
generation, size/FLOP accounting and Hugging Face conversion.

Names load on first use, so `herd --help` (which imports `text.cli`) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "TextConfig": "text.config", "RopeScaling": "text.config", "PRESETS": "text.config",
    "create_config": "text.config", "list_presets": "text.config",
    "Transformer": "text.model",
    "Tokenizer": "text.tokenizer", "load_tokenizer": "text.tokenizer",
    "ChatFormat": "text.chat_format", "Message": "text.chat_format",
    "generate": "text.generate",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'text' has no attribute {name!r}")
