"""herd's data layer: fetch raw sources from the package registries, build webdataset shards,
curate text (Llama 3 §3.1), and load batches with an exact-resume state.

    from data import write_shards, ShardReader, PackedTextLoader, ResumableLoader

Only standard-library modules load with the package; the torch-based loaders load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from data.debian import default_cache, fetch_debian
from data.shards import ShardReader, read_manifest, split_shards, write_manifest, write_shards

__all__ = ["default_cache", "fetch_debian", "write_shards", "write_manifest", "read_manifest", "split_shards",
           "ShardReader", "ResumableLoader", "CollateBatcher", "PackedTextLoader"]

_LAZY = {"ResumableLoader": "data.loader", "CollateBatcher": "data.loader", "PackedTextLoader": "data.packing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
