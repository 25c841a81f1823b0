"""herd's chat demo: multi-turn chat with any checkpoint (text, images, video, speech) and the
Llama Guard 3 style safety guard that can screen both directions.

    from chat import ChatSession, Guard

Nothing heavy loads with the package (`herd --help` imports `chat.cli`); the classes load on use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ChatSession", "Settings", "Reply", "Guard", "Verdict", "load_media", "attach_media"]

_LAZY = {"ChatSession": "chat.session", "Settings": "chat.session", "Reply": "chat.session",
         "Guard": "chat.guard", "Verdict": "chat.guard", "load_media": "chat.media", "attach_media": "chat.media"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'chat' has no attribute {name!r}")
