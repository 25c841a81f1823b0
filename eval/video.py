"""`herd eval video`: greedy clip captions from a `video-adapter` checkpoint, scored with CIDEr-D and
BLEU-4 (pycocoevalcap) and with motion accuracy (the motion named in the caption vs the clip's
label), beside single-frame baselines (llama3-spec §4).

    herd eval video --checkpoint runs/demo/video_adapter --shards runs/demo/data/video \\
        --split test --out runs/demo/eval/video
    herd eval video --checkpoint CKPT --manifest clips.jsonl --out OUT   # {"video", "captions", "motion"?}

Three readings of every clip, all greedy with the same prompt:
- `video`: the model on all sampled frames (what the checkpoint is for);
- `single_frame`: the same model with the clip replaced by its middle frame repeated, so the
  aggregator sees a still picture: motion it names is a guess (chance on left vs right);
- `image_model`: the frozen image path (the vision-adapter's weights inside the checkpoint) on the
  middle frame as an `<|image|>`: the model the video stage started from.

Writes OUT/scores.json (`motion_accuracy`, `single_frame_motion_accuracy`,
`image_model_motion_accuracy`, `cider_d`, `bleu_4`, per motion and per source), OUT/samples.jsonl
and OUT/strip.png (frames of the first clips with generated and reference captions). Clips that
cannot be decoded are skipped and counted (`skipped`); short clips repeat frames.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path
from typing import Any, Iterator

from eval.arguments import add_source_arguments

STRIP_CLIPS = 8
"""Clips shown in strip.png."""

MOTION_WORDS = (("counterclockwise", "rotate_ccw"), ("anticlockwise", "rotate_ccw"), ("clockwise", "rotate_cw"),
                ("grow", "grow"), ("shrink", "shrink"), ("left", "left"), ("right", "right"),
                ("up", "up"), ("rise", "up"), ("down", "down"), ("fall", "down"))
"""Caption word (prefix) → motion label of data/build_video.py, tried in order (counterclockwise
before clockwise); a caption naming none of them is "none" (the label of in-place actions)."""


def parse_motion(caption: str) -> str:
    """The motion label a caption names ("a giraffe moves left" → "left"), else "none"."""
    words = re.findall(r"[a-z]+", caption.lower())
    for word, label in MOTION_WORDS:
        if any(w.startswith(word) for w in words):
            return label
    return "none"


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("video", help="caption clips with a video-adapter checkpoint; motion accuracy, CIDEr-D",
                         description=__doc__.split("\n\n")[0])
    add_source_arguments(p, checkpoint="video-adapter", shards="video shard folder (with manifest.json)",
                         manifest='{"video": path, "captions": [...]}', unit="clips")
    p.add_argument("--batch-size", type=int, default=32, help="clips per generation batch")
    p.add_argument("--max-new-tokens", type=int, default=24, help="longest caption in tokens")
    p.add_argument("--frames", type=int, default=0, help="frames per clip (0 = the checkpoint's)")
    p.add_argument("--prompt", default=None, help="user prompt after <|video|> (default: the checkpoint's first)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from train.checkpoint import resolve_checkpoint
    from train.models import load_model

    ckpt = resolve_checkpoint(args.checkpoint)
    model, meta = load_model(ckpt, device=args.device)
    if not hasattr(model, "attach_video"):
        raise ValueError(f"{ckpt} holds a {meta['model']['arch']} model that takes no video; "
                         "eval video needs a video-adapter checkpoint")
    video_config = meta.get("config", {}).get("video", {})
    frames = args.frames or video_config.get("frames") or model.resampler_config.frames_per_group
    prompt = args.prompt or (video_config.get("prompts") or ["Describe the motion."])[0]
    skipped: list[str] = []
    source = read_manifest_clips(args.manifest, frames, skipped) if args.manifest else \
        read_shard_clips(args.shards, args.split, frames, skipped)
    clips = list(itertools.islice(source, args.limit or None))
    if not clips:
        raise ValueError(f"no readable clips in {args.manifest or args.shards}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = evaluate_clips(model, ckpt, clips, prompt=prompt, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, out=args.out)
    report.update(checkpoint=str(ckpt), source=str(args.manifest or f"{args.shards} [{args.split}]"),
                  prompt=prompt, frames=frames, skipped=len(skipped), skipped_ids=skipped[:20])
    (args.out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"video: {report['n']} clips ({len(skipped)} skipped)  motion {report['motion_accuracy']:.3f}  "
          f"single-frame {report['single_frame_motion_accuracy']:.3f}  image model "
          f"{report['image_model_motion_accuracy']:.3f}  CIDEr-D {report['cider_d']:.3f}  "
          f"BLEU-4 {report['bleu_4']:.3f}  → {args.out}")
    return 0


# --------------------------------------------------------------------------------------- clips

def read_shard_clips(root: Path, split: str, frames: int, skipped: list[str]) -> Iterator[dict]:
    """{"id", "frames" uint8 [F, H, W, 3], "references", "motion", "source"} of a shard split, in
    shard order; clips that do not decode are appended to `skipped` (the reader warns)."""
    from data.shards import ShardReader, split_shards
    from video.frames import read_frames

    def decode(sample: dict) -> dict:
        name = f"{sample['__shard__']}/{sample['__key__']}"
        return {"id": sample["__key__"], "frames": read_frames(sample["mp4"], frames, name=name),
                **_labels(json.loads(sample["json"]), name)}

    reader = ShardReader(split_shards(Path(root), split), shuffle=False, epochs=1, decode=decode,
                         required=("mp4", "json"))
    yield from reader
    skipped.extend(f"{kind} ×{n}" for kind, n in reader.skipped.items())


def read_manifest_clips(path: Path, frames: int, skipped: list[str]) -> Iterator[dict]:
    """The clips of a JSONL manifest {"video": path, "captions": [...], "motion"?, "id"?}."""
    from eval.manifest import read_manifest_lines
    from video.frames import read_frames

    records = list(read_manifest_lines(path, required=("video", "captions"), paths=("video",)))
    for n, record in enumerate(records, 1):
        name = str(record.get("id", f"{path.stem}-{n}"))
        try:
            clip = read_frames(record["video"], frames)
        except ValueError as err:
            print(f"skipping {path}:{n}: {err}")
            skipped.append(name)
            continue
        yield {"id": name, "frames": clip, **_labels(record, f"{path}:{n}")}


def _labels(record: dict, where: str) -> dict[str, Any]:
    if not record.get("captions"):
        raise ValueError(f"{where}: no 'captions' in its json")
    return {"references": list(record["captions"]), "motion": record.get("motion"),
            "source": record.get("source", "manifest")}


# ------------------------------------------------------------------------------------- scoring

def evaluate_clips(model, ckpt: Path, clips: list[dict], *, prompt: str, batch_size: int,
                   max_new_tokens: int, out: Path) -> dict[str, Any]:
    """Caption every clip three ways, score, and write samples.jsonl and strip.png."""
    from tqdm import tqdm

    from eval.caption_metrics import caption_scores
    from text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(ckpt)
    readings: dict[str, list[str]] = {"video": [], "single_frame": [], "image_model": []}
    with tqdm(total=len(clips), desc="video", unit="clip") as bar:
        for start in range(0, len(clips), batch_size):
            chunk = [c["frames"] for c in clips[start:start + batch_size]]
            for mode, captions in readings.items():
                captions += greedy_video_captions(model, tokenizer, chunk, prompt, mode=mode,
                                                  max_new_tokens=max_new_tokens)
            bar.update(len(chunk))
    refs = [c["references"] for c in clips]
    scored = caption_scores(readings["video"], refs, per_sample=True)
    per_sample = scored.pop("per_sample")
    predicted = {mode: [parse_motion(g) for g in gen] for mode, gen in readings.items()}
    labelled = [i for i, c in enumerate(clips) if c["motion"] is not None]
    report: dict[str, Any] = {
        "n": len(clips), "n_motion_labels": len(labelled),
        "motion_accuracy": _accuracy(predicted["video"], clips, labelled),
        "single_frame_motion_accuracy": _accuracy(predicted["single_frame"], clips, labelled),
        "image_model_motion_accuracy": _accuracy(predicted["image_model"], clips, labelled),
        "cider_d": scored["CIDEr-D"], "bleu_4": scored["BLEU-4"], "exact_match": scored["exact_match"],
        "by_motion": {m: {mode: _accuracy(predicted[mode], clips, [i for i in labelled if clips[i]["motion"] == m])
                          for mode in readings} | {"n": sum(clips[i]["motion"] == m for i in labelled)}
                      for m in sorted({clips[i]["motion"] for i in labelled})},
        "by_source": {s: {mode: _accuracy(predicted[mode], clips, [i for i in labelled if clips[i]["source"] == s])
                          for mode in readings} | {"n": sum(c["source"] == s for c in clips)}
                      for s in sorted({c["source"] for c in clips})},
        "single_frame_cider_d": caption_scores(readings["single_frame"], refs)["CIDEr-D"],
    }
    with open(out / "samples.jsonl", "w") as f:
        for i, (c, p) in enumerate(zip(clips, per_sample)):
            f.write(json.dumps({"id": c["id"], "source": c["source"], "motion": c["motion"],
                                **{mode: readings[mode][i] for mode in readings},
                                **{f"{mode}_motion": predicted[mode][i] for mode in readings},
                                "references": c["references"], **p}, ensure_ascii=False) + "\n")
    write_strip(clips[:STRIP_CLIPS], readings["video"], readings["single_frame"], out / "strip.png")
    return report


def _accuracy(predicted: list[str], clips: list[dict], indices: list[int]) -> float | None:
    """Share of `indices` whose predicted motion equals the clip's label (None without labels)."""
    if not indices:
        return None
    return sum(predicted[i] == clips[i]["motion"] for i in indices) / len(indices)


def greedy_video_captions(model, tokenizer, clips: list, prompt: str, *, mode: str = "video",
                          max_new_tokens: int = 24) -> list[str]:
    """Greedy replies for a batch of clips (uint8 [F, H, W, 3] each, equal F).

    mode "video": `<|video|>` + all frames; "single_frame": `<|video|>` + the middle frame
    repeated F times; "image_model": `<|image|>` + the middle frame through the image path.
    """
    import torch

    from text.generate import generate
    from train.stages.video_batches import VideoPrompt
    from video.transform import VideoTransform
    from vision.transforms import ImageTransform, collate_images

    device = model.output.weight.device
    vc = model.vision_encoder.config
    chat = VideoPrompt(tokenizer, [prompt])
    middle = [c[len(c) // 2] for c in clips]  # [H, W, 3]
    if mode == "image_model":
        image = ImageTransform(vc.tile_size, vc.max_tiles)
        pixels, ratio_ids = collate_images([[image(m.permute(2, 0, 1))] for m in middle], vc.max_tiles)
        ids = chat.prompt(prompt, media_id=tokenizer.image_id)
        pixels, ratio_ids = pixels.to(device), ratio_ids.to(device)

        def attach(cache) -> None:
            model.attach_images(cache, pixels, ratio_ids)
    else:
        if mode == "single_frame":
            clips = [m[None].expand(len(c), -1, -1, -1) for m, c in zip(middle, clips)]
        transform = VideoTransform(vc.tile_size)
        pixels, ratio_ids = (torch.stack(t).to(device) for t in zip(*(transform(c) for c in clips)))
        ids = chat.prompt(prompt)

        def attach(cache) -> None:
            model.attach_video(cache, pixels, ratio_ids)
    with torch.inference_mode():
        outs = generate(model, [ids] * len(clips), max_new_tokens=max_new_tokens,
                        stop_tokens=tokenizer.stop_tokens, attach=attach)
    return [tokenizer.decode([t for t in o if t not in tokenizer.stop_tokens], skip_special=True).strip()
            for o in outs]


def write_strip(clips: list[dict], generated: list[str], single: list[str], path: Path) -> Path:
    """One row per clip: its frames side by side, titled with the generated, single-frame and
    reference captions."""
    import torch
    from PIL import Image

    from eval.figures import image_grid

    strips = [Image.fromarray(torch.cat(list(c["frames"]), dim=1).numpy()) for c in clips]
    titles = [[f"video: {g}", f"single frame: {s}", f"ref: {c['references'][0]}"]
              for c, g, s in zip(clips, generated, single)]
    return image_grid(strips, titles, path, cols=1, width=120)


__all__ = ["MOTION_WORDS", "parse_motion", "register", "run", "read_shard_clips", "read_manifest_clips",
           "evaluate_clips", "greedy_video_captions", "write_strip"]
