"""Data-loader throughput beside what the tiny training stages consume (issue 3, "Benchmarks").

    python benchmarks/data_throughput.py [--text DIR] [--tokenizer tokenizer.json] [--consume 5000]
                                         [--images DIR] [--video DIR] [--speech DIR]

Text: tokens/s of `PackedTextLoader` (tiny text-pretrain shape: seq 256, batch 8) with 0 and 2
workers, worker start-up included, and the ratio to the rate a tiny training step consumes
(target ≥ 5×). Media (when `data/media.py` and built shards exist): images/s, clips/s and audio
seconds/s of a `ShardReader` with the media decoders, 0 and 2 workers.

Without --text it uses runs/demo/data/text, else builds tiny text shards from the fetch cache,
else writes synthetic shards; without --tokenizer it uses runs/demo/tokenizer, else trains a
throwaway 8k BPE on the validation split.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.loader import CollateBatcher, ResumableLoader  # noqa: E402
from data.packing import PackedTextLoader  # noqa: E402
from data.shards import ShardReader, decode_text, split_shards, write_manifest, write_shards  # noqa: E402

DEMO = Path("runs/demo")


def _text_dir(arg: Path | None, tmp: Path) -> Path:
    if arg is not None:
        return arg
    if (DEMO / "data/text/manifest.json").is_file():
        return DEMO / "data/text"
    from data.debian import default_cache

    out = tmp / "text"
    try:
        from data.build_text import build

        build(out, preset="tiny", seed=0, cache=default_cache())
    except FileNotFoundError:
        import random

        rng = random.Random(0)
        words = "the whale sea ship captain harpoon white deep voyage sailor wind storm".split()
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(50, 800))) for _ in range(4000)]
        for split, part in (("train", docs[:3600]), ("validation", docs[3600:])):
            shards = write_shards(({"txt": t} for t in part), out, split, max_count=400)
            write_manifest(out, kind="text", splits={split: shards}, sources=[])
    return out


def _tokenizer(arg: Path | None, text_dir: Path, tmp: Path):
    from text.tokenizer import load_tokenizer, train_tokenizer

    if arg is not None:
        return load_tokenizer(arg)
    if (DEMO / "tokenizer/tokenizer.json").is_file():
        return load_tokenizer(DEMO / "tokenizer/tokenizer.json")
    sample = tmp / "sample.txt"
    split = "validation" if (text_dir / "validation-000000.tar").is_file() else "train"
    reader = ShardReader(split_shards(text_dir, split), decode=decode_text, epochs=1)
    sample.write_text("\n\n".join(s["txt"] for s in reader), encoding="utf-8")
    return load_tokenizer(train_tokenizer([sample], vocab_size=8192, out_dir=tmp / "tok"))


def bench_text(shards: list[Path], tokenizer, *, workers: int, batches: int, seq_len: int, batch_size: int) -> float:
    loader = PackedTextLoader(shards, tokenizer, seq_len=seq_len, batch_size=batch_size, num_workers=workers, seed=0)
    start = time.perf_counter()
    tokens = 0
    for _, batch in zip(range(batches), loader):
        tokens += batch["tokens"][:, :-1].numel()
    return tokens / (time.perf_counter() - start)


def _media_decoder(kind: str):
    from data import media

    def decode(sample: dict) -> dict:
        if kind == "images":
            image = media.decode_image(sample.get("png") or sample.get("jpg") or b"")
            return {"units": 1.0, "size": image.size}
        if kind == "video":
            frames = media.decode_video(sample.get("mp4") or b"", num_frames=8)
            return {"units": 1.0, "shape": tuple(frames.shape)}
        wave = media.decode_audio(sample.get("flac") or sample.get("wav") or b"")
        return {"units": wave.numel() / 16000, "samples": wave.numel()}

    return decode


def _sum_units(samples: list[dict]) -> float:
    return sum(s["units"] for s in samples)


def bench_media(kind: str, root: Path, *, workers: int, samples: int) -> float:
    loader = ResumableLoader(split_shards(root, "train"), CollateBatcher(8, _sum_units), num_workers=workers,
                             decode=_media_decoder(kind))
    start = time.perf_counter()
    units = 0.0
    for _, batch_units in zip(range(max(samples // 8, 1)), loader):
        units += batch_units
    return units / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=None)
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--consume", type=float, default=5000.0, help="tokens/s a tiny text-pretrain step consumes")
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--media-samples", type=int, default=160)
    for kind in ("images", "video", "speech"):
        parser.add_argument(f"--{kind}", type=Path, default=DEMO / "data" / kind)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        text_dir = _text_dir(args.text, tmp)
        tokenizer = _tokenizer(args.tokenizer, text_dir, tmp)
        shards = split_shards(text_dir, "train")
        print(f"text: {len(shards)} shards from {text_dir}; seq {args.seq_len} × batch {args.batch_size}; "
              f"a tiny step consumes ~{args.consume:,.0f} tokens/s")
        for workers in (0, 2):
            rate = bench_text(shards, tokenizer, workers=workers, batches=args.batches, seq_len=args.seq_len,
                              batch_size=args.batch_size)
            verdict = "ok" if rate >= 5 * args.consume else "BELOW 5x"
            print(f"  workers={workers}: {rate:12,.0f} tokens/s  = {rate / args.consume:6.1f}× consumption  [{verdict}]")
    if not Path("data/media.py").is_file() and not (Path(__file__).parents[1] / "data/media.py").is_file():
        return 0
    units = {"images": "images/s", "video": "clips/s", "speech": "audio s/s"}
    for kind in ("images", "video", "speech"):
        root = getattr(args, kind)
        if not (root / "manifest.json").is_file():
            print(f"{kind}: no shards at {root} (build them with `herd data build {kind}`); skipped")
            continue
        for workers in (0, 2):
            rate = bench_media(kind, root, workers=workers, samples=args.media_samples)
            print(f"{kind}: workers={workers}: {rate:10,.1f} {units[kind]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
