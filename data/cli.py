"""Data commands: `herd data fetch`, `herd data build KIND`, `herd data curate`.

Heavy imports (webdataset, rdata, datasketch, torch) happen inside the handlers so `herd --help`
stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

BUILD_KINDS = ("text", "chat", "images", "video", "speech", "guard")
"""`chat`: SFT dialogues and DPO preference pairs built from the text corpora (data/build_chat.py)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="fetch raw data, build shards, curate text")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    fetch = sub.add_parser("fetch", help="download the raw sources (Debian packages) into the cache")
    fetch.add_argument("--cache", type=Path, default=None, help="cache folder (default $HERD_CACHE or ~/.cache/herd)")
    fetch.add_argument("--only", default=None, help="comma-separated kinds: text,images,video,speech")
    fetch.set_defaults(handler=_fetch)

    build = sub.add_parser("build", help="build train/validation/test webdataset shards of one kind")
    build.add_argument("kind", choices=BUILD_KINDS)
    build.add_argument("--out", required=True, type=Path, help="output folder (shards + manifest.json)")
    build.add_argument("--preset", default="tiny", choices=("tiny", "full"))
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--cache", type=Path, default=None, help="cache folder of `herd data fetch`")
    build.set_defaults(handler=_build)

    curate = sub.add_parser("curate", help="dedup, filter and scrub a text shard folder (§3.1 pipeline)")
    curate.add_argument("input", type=Path, help="folder with text shards + manifest.json")
    curate.add_argument("--out", required=True, type=Path)
    curate.add_argument("--config", type=Path, default=None, help="TOML with curation thresholds")
    curate.set_defaults(handler=_curate)


def _cache(arg: Path | None) -> Path:
    from data.debian import default_cache

    return arg if arg is not None else default_cache()


def _fetch(args: argparse.Namespace) -> int:
    from data.fetch import fetch_sources

    kinds = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    records = fetch_sources(_cache(args.cache), kinds)
    for record in records:
        size = record.get("size") or record.get("installed_size") or 0
        print(f"{record['kind']:7s} {record['registry']:6s} {record['name']:26s} {record.get('version', ''):24s} "
              f"{size / 1e6:8.1f} MB  {record['licence']}")
    print(f"cache: {_cache(args.cache)}")
    return 0


def _build(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"data.build_{args.kind}")
    except ModuleNotFoundError as err:
        if err.name == f"data.build_{args.kind}":
            raise RuntimeError(f"no builder for {args.kind} yet (data/build_{args.kind}.py)") from err
        raise
    start = time.perf_counter()
    summary = module.build(args.out, preset=args.preset, seed=args.seed, cache=_cache(args.cache))
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"built {args.kind} ({args.preset}) in {time.perf_counter() - start:.1f} s → {args.out}")
    return 0


def _curate(args: argparse.Namespace) -> int:
    from data.curate.pipeline import CurationConfig, curate_dataset

    config = CurationConfig.from_toml(args.config) if args.config else CurationConfig()
    report = curate_dataset(args.input, args.out, config)
    for split, stats in report["splits"].items():
        removed = ", ".join(f"{k} {v}" for k, v in stats["removed"].items() if v) or "nothing"
        print(f"{split:10s} kept {stats['kept']:6d} of {stats['input']:6d}  removed: {removed}")
    print(f"report: {args.out / 'curation_report.md'}")
    return 0
