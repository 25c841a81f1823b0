"""`herd eval caption`: greedy image captions from a `vision-adapter` checkpoint, scored with CIDEr-D
and BLEU-4 (pycocoevalcap, PTB tokenizer) and exact match, beside the "most frequent training
caption" baseline scored the same way.

    herd eval caption --checkpoint runs/demo/vision_adapter --shards runs/demo/data/images \\
        --split test --out runs/demo/eval/caption
    herd eval caption --checkpoint CKPT --manifest my_images.jsonl --out OUT   # {"image", "captions"}

Writes OUT/scores.json (overall and per source), OUT/samples.jsonl (id, source, generated,
references) and OUT/grid.png (the first images with generated vs reference captions). Samples are
read in a fixed order (shard order, no shuffling) and captioned in batches, so reruns are identical.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

from eval.arguments import add_source_arguments

GRID_IMAGES = 16
"""Images shown in grid.png."""


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("caption", help="caption images with a vision-adapter checkpoint; CIDEr-D, BLEU-4",
                         description=__doc__.split("\n\n")[0])
    add_source_arguments(p, checkpoint="vision-adapter", unit="images",
                         shards="image shard folder (with manifest.json) or a glob of .tar shards",
                         manifest='{"image": path, "captions": [...]}')
    p.add_argument("--batch-size", type=int, default=32, help="images per generation batch")
    p.add_argument("--max-new-tokens", type=int, default=48, help="longest caption in tokens")
    p.add_argument("--prompt", default=None, help="user prompt after <|image|> (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    model, meta = load_caption_model(ckpt, args.device)
    prompt = args.prompt or meta.get("config", {}).get("vision", {}).get("prompt", "Describe the image.")
    samples = list(_limited(read_manifest_samples(Path(args.manifest)) if args.manifest
                            else read_shard_samples(args.shards, args.split), args.limit))
    if not samples:
        raise ValueError(f"no samples to caption in {args.manifest or args.shards}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = evaluate_captions(model, ckpt, samples, prompt=prompt, batch_size=args.batch_size,
                               max_new_tokens=args.max_new_tokens, out=out,
                               baseline_shards=_training_shards(meta, args.shards))
    report.update(checkpoint=str(ckpt), source=args.manifest or f"{args.shards} [{args.split}]", prompt=prompt)
    (out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    m, b = report["model"], report.get("baseline", {})
    print(f"caption: {report['n']} images  CIDEr-D {m['CIDEr-D']:.3f}  BLEU-4 {m['BLEU-4']:.3f}  "
          f"exact {m['exact_match']:.3f}" + (f"  | baseline CIDEr-D {b['CIDEr-D']:.3f}" if b else "")
          + f"  → {out}")
    return 0


def load_caption_model(ckpt: Path, device: str):
    """The fused model of a vision-adapter (or any image-capable) checkpoint; a clear error otherwise."""
    from train.checkpoint import read_meta
    from train.models import load_model

    arch = read_meta(ckpt).get("model", {}).get("arch")
    if arch == "clip":
        raise ValueError(f"{ckpt} is a clip checkpoint; caption eval needs a vision-adapter checkpoint")
    model, meta = load_model(ckpt, device=device)
    if not hasattr(model, "attach_images"):
        raise ValueError(f"{ckpt} holds a {arch} model that takes no images; caption eval needs a "
                         "vision-adapter checkpoint")
    return model, meta


def evaluate_captions(model, ckpt: Path, samples: list[dict], *, prompt: str, batch_size: int,
                      max_new_tokens: int, out: Path, baseline_shards: Sequence[Path] = ()) -> dict[str, Any]:
    """Caption `samples` ({"id", "image", "references", "source"}), score, write samples/grid."""
    from tqdm import tqdm

    from eval.caption_metrics import caption_scores
    from eval.figures import image_grid
    from text.tokenizer import load_tokenizer
    from vision.transforms import ImageTransform

    tokenizer = load_tokenizer(ckpt)
    vc = model.vision_encoder.config
    transform = ImageTransform(vc.tile_size, vc.max_tiles)
    generated: list[str] = []
    with tqdm(total=len(samples), desc="caption", unit="img") as bar:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            generated += greedy_captions(model, tokenizer, [transform(s["image"]) for s in chunk], prompt,
                                         max_new_tokens=max_new_tokens)
            bar.update(len(chunk))
    refs = [s["references"] for s in samples]
    scored = caption_scores(generated, refs, per_sample=True)
    per_sample = scored.pop("per_sample")
    report: dict[str, Any] = {"n": len(samples), "model": scored, "by_source": _by_source(samples, generated)}
    common = most_frequent_caption(baseline_shards)
    if common is not None:
        report["baseline"] = {"caption": common, **caption_scores([common] * len(samples), refs)}
    with open(out / "samples.jsonl", "w") as f:
        for s, g, p in zip(samples, generated, per_sample):
            f.write(json.dumps({"id": s["id"], "source": s["source"], "generated": g, "references": s["references"],
                                **p}, ensure_ascii=False) + "\n")
    shown = samples[:GRID_IMAGES]
    image_grid([s["image"] for s in shown], [[f"gen: {g}", f"ref: {s['references'][0]}"]
                                            for s, g in zip(shown, generated)], out / "grid.png")
    return report


def greedy_captions(model, tokenizer, tiles: list, prompt: str, *, max_new_tokens: int = 48) -> list[str]:
    """Greedy replies to "<|image|> prompt" for each image (`vision.transforms.Tiles`), one batch."""
    import torch

    from text.chat_format import ChatFormat
    from text.generate import generate
    from train.stages.image_batches import image_prompt
    from vision.transforms import collate_images

    device = model.output.weight.device
    ids, _ = image_prompt(ChatFormat(tokenizer), prompt)
    pixels, ratio_ids = collate_images([[t] for t in tiles], model.vision_encoder.config.max_tiles)
    pixels, ratio_ids = pixels.to(device), ratio_ids.to(device)
    with torch.inference_mode():
        outs = generate(model, [ids] * len(tiles), max_new_tokens=max_new_tokens, stop_tokens=tokenizer.stop_tokens,
                        attach=lambda cache: model.attach_images(cache, pixels, ratio_ids))
    return [tokenizer.decode([t for t in o if t not in tokenizer.stop_tokens], skip_special=True).strip()
            for o in outs]


def _by_source(samples: list[dict], generated: list[str]) -> dict[str, dict]:
    """Scores per sample source (scene / emoji / tuxpaint / manifest) when there is more than one."""
    from eval.caption_metrics import caption_scores

    sources = sorted({s["source"] for s in samples})
    if len(sources) < 2:
        return {}
    return {src: caption_scores([g for s, g in zip(samples, generated) if s["source"] == src],
                                [s["references"] for s in samples if s["source"] == src]) for src in sources}


def read_shard_samples(spec: str, split: str) -> Iterator[dict]:
    """Samples of `split` in a shard folder, or of the shards a glob names, in fixed order."""
    from train.stages.image_batches import image_reader

    for s in image_reader(_shard_paths(spec, split), rank=0, world_size=1, seed=0, shuffle=False, epochs=1):
        meta = s["json"]
        if not meta.get("captions"):
            raise ValueError(f"{s['shard']}: key {s['key']}: no 'captions' in its json")
        yield {"id": s["key"], "image": s["image"], "references": list(meta["captions"]),
               "source": meta.get("source", "shards")}


def read_manifest_samples(path: Path) -> Iterator[dict]:
    """Samples of a JSONL manifest {"image": path relative to the manifest, "captions": [...]}."""
    from data.media import decode_image

    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not JSON ({err.msg})") from None
        if "image" not in record or not record.get("captions"):
            raise ValueError(f"{path}:{n}: needs 'image' and a non-empty 'captions' list")
        image = path.parent / record["image"]
        if not image.is_file():
            raise FileNotFoundError(f"{path}:{n}: image not found: {image}")
        yield {"id": record.get("id", f"{path.stem}-{n}"), "image": decode_image(image.read_bytes()),
               "references": list(record["captions"]), "source": record.get("source", "manifest")}


def most_frequent_caption(shards: Sequence[Path]) -> str | None:
    """The caption that occurs most often in `shards` (json only; images are not decoded)."""
    from data.shards import ShardReader

    if not shards:
        return None
    counts: Counter[str] = Counter()
    reader = ShardReader(shards, shuffle=False, epochs=1, decode=lambda s: json.loads(s["json"]), required=("json",))
    for meta in reader:
        counts.update(meta.get("captions", []))
    return counts.most_common(1)[0][0] if counts else None


def _shard_paths(spec: str, split: str) -> list[Path]:
    from data.shards import split_shards

    path = Path(spec)
    if path.is_dir():
        return split_shards(path, split)
    paths = sorted(Path(p) for p in glob.glob(str(spec)))
    if not paths:
        raise FileNotFoundError(f"--shards {spec}: not a folder and no shard matches it")
    return paths


def _training_shards(meta: dict, shards: str | None) -> list[Path]:
    """The train split the checkpoint was trained on (from its config), else that of --shards."""
    from data.shards import split_shards

    data = meta.get("config", {}).get("data", {})
    for root, split in ((data.get("shards"), data.get("train_split", "train")), (shards, "train")):
        if root and Path(root).is_dir():
            try:
                return split_shards(Path(root), split)
            except (ValueError, FileNotFoundError):
                continue
    return []


def _limited(samples: Iterator[dict], limit: int) -> Iterator[dict]:
    for i, s in enumerate(samples):
        if limit and i >= limit:
            return
        yield s


__all__ = ["register", "run", "evaluate_captions", "greedy_captions", "load_caption_model", "most_frequent_caption",
           "read_shard_samples", "read_manifest_samples"]
