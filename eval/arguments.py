"""The arguments every `herd eval TASK` takes, defined once:

    --checkpoint CKPT (--shards FOLDER [--split S] | --manifest FILE.jsonl) --out DIR [--limit N]

Checkpoints may be a checkpoint dir, a run folder or its `latest` pointer; manifests follow
DESIGN "External data" (`eval/manifest.py`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_source_arguments(p: argparse.ArgumentParser, *, checkpoint: str, shards: str, manifest: str | None,
                         split: str = "test", unit: str = "samples") -> None:
    """Add --checkpoint, --shards/--manifest (exclusive; --shards alone when `manifest` is None),
    --split, --out and --limit, with help texts naming the task's `checkpoint` kind, `shards`
    folder, `manifest` line and `unit` of work."""
    p.add_argument("--checkpoint", required=True, type=Path, help=f"{checkpoint} checkpoint dir, run folder or latest")
    if manifest is None:
        p.add_argument("--shards", required=True, type=Path, help=shards)
    else:
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--shards", type=Path, help=shards)
        source.add_argument("--manifest", type=Path, help=f"JSONL file, one {manifest} a line")
    p.add_argument("--split", default=split, help=f"split of --shards to evaluate (default: {split})")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--limit", type=int, default=0, help=f"evaluate at most this many {unit} (0 = all)")


__all__ = ["add_source_arguments"]
