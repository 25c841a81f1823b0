"""`herd eval probe`: how much of each object's identity a vision checkpoint's frozen encoder keeps,
read by a linear probe, beside the same probe on a randomly initialised encoder of the same shape.

    herd eval probe --checkpoint runs/demo/vision_clip --shards runs/demo/data/images --out OUT

The image shards' samples carry their objects with pixel boxes (`data/scenes.py`). Each object's
feature is the mean of the encoder's patch tokens (all exported layers, [output_dim]) whose
centres fall inside its box; a softmax-regression probe is fitted on the objects of the
first `--train-limit` train images and scored on those of the test images (names the train
objects never had are skipped and counted). The random-encoder row says what the architecture
gives without training, so "training helped" is a difference of two numbers from one run.

Why: caption metrics (`herd eval caption`) mix what the encoder sees with what the frozen LM says,
and take minutes; this reads the encoder alone in seconds. Measured at `tiny` (2026-12-05): plain
`vision-clip` 0.28, a random encoder 0.20, `vision-clip` with its region loss 0.45. Whole-image
contrast leaves object identity mostly unlearned.

Writes OUT/scores.json and OUT/samples.jsonl (id, object name, probe's guess). Deterministic: fixed
sample order, probe weights start at zero, the random encoder is seeded.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from eval.arguments import add_source_arguments

if TYPE_CHECKING:
    from torch import Tensor

PROBE_STEPS = 300
"""Full-batch Adam steps of the probe (its train accuracy has settled by then at `tiny`)."""


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("probe", help="linear probe of object identity on a frozen vision encoder",
                         description=__doc__.split("\n\n")[0])
    add_source_arguments(p, checkpoint="vision-clip or vision-adapter", manifest=None, unit="test images",
                         shards="image shard folder (with manifest.json) whose json lists objects with boxes")
    p.add_argument("--train-limit", type=int, default=3000, help="train images the probe is fitted on")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder batch")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from data.shards import split_shards
    from train.checkpoint import resolve_checkpoint
    from vision.encoder import build_encoder

    ckpt = resolve_checkpoint(args.checkpoint)
    encoder = load_encoder(ckpt)
    train = list(_objects_of(split_shards(Path(args.shards), "train"), args.train_limit))
    test = list(_objects_of(split_shards(Path(args.shards), args.split), args.limit))
    if not train or not test:
        raise ValueError(f"{args.shards}: no objects with boxes in the train or {args.split} split")
    torch.manual_seed(0)
    untrained = build_encoder(encoder.config).eval()
    names = sorted({name for _, objects, _ in train for name, _ in objects})
    result = probe_objects(encoder, train, test, names, batch_size=args.batch_size)
    baseline = probe_objects(untrained, train, test, names, batch_size=args.batch_size)
    counts = Counter(name for _, name, _ in result["guesses"])
    scores = {"probe_accuracy": result["test"], "probe_train_accuracy": result["train"],
              "random_encoder_accuracy": baseline["test"], "random_encoder_train_accuracy": baseline["train"],
              "chance": 1 / len(names), "majority": max(counts.values()) / sum(counts.values()),
              "classes": len(names), "objects_train": result["n_train"], "objects_test": result["n_test"],
              "unseen_names": result["unseen"], "checkpoint": str(ckpt), "source": f"{args.shards} [{args.split}]"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    with (out / "samples.jsonl").open("w") as f:
        for key, name, guess in result["guesses"]:
            f.write(json.dumps({"id": key, "name": name, "probe": guess}) + "\n")
    print(f"probe: {scores['objects_test']} test objects, {len(names)} names  accuracy {scores['probe_accuracy']:.3f}"
          f"  | random encoder {scores['random_encoder_accuracy']:.3f}  chance {scores['chance']:.3f}  → {out}")
    return 0


def load_encoder(ckpt: Path):
    """The image encoder of a clip or image-capable checkpoint, in eval mode; a clear error otherwise."""
    from train.models import load_model

    model, _ = load_model(ckpt)
    encoder = getattr(model, "vision_encoder", None) or getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "tile_mask"):
        raise ValueError(f"{ckpt} holds no image encoder; probe needs a vision-clip or vision-adapter checkpoint")
    return encoder.eval()


def object_features(encoder, images: list, boxes: list[list[tuple]]) -> list[list[Tensor | None]]:
    """Per image, per box: the mean patch feature [output_dim] inside it (`vision.transforms.region_mask`;
    None if no patch centre is inside), the image tiled as the encoder's own transform tiles it."""
    import torch

    from vision.transforms import ImageTransform, collate_images, region_mask

    c = encoder.config
    tiles = [ImageTransform(c.tile_size, c.max_tiles)(image) for image in images]
    pixels, ratio_ids = collate_images([[t] for t in tiles], c.max_tiles)
    with torch.no_grad():
        tokens = encoder(pixels, ratio_ids)[:, 0]  # [B, max_tiles, 1 + g², output_dim]
    out = []
    for t, feats, image_boxes in zip(tiles, tokens, boxes):
        inside = [region_mask(box, t, c.patch_size, c.max_tiles) for box in image_boxes]
        out.append([feats[m].mean(0) if m.any() else None for m in inside])
    return out


def fit_linear_probe(x: Tensor, y: Tensor, n_classes: int, *, steps: int = PROBE_STEPS,
                     weight_decay: float = 1e-3):
    """Softmax regression on standardised features x [N, D] → labels y [N]; returns a classifier
    (features [M, D] → predicted labels [M])."""
    import torch
    import torch.nn.functional as F

    mean, std = x.mean(0), x.std(0) + 1e-5
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    z = (x - mean) / std
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(z @ w + b, y) + weight_decay * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    w, b = w.detach(), b.detach()
    return lambda feats: (((feats - mean) / std) @ w + b).argmax(-1)


def probe_objects(encoder, train: list, test: list, names: list[str], *, batch_size: int = 64) -> dict:
    """Fit the probe on `train` objects, score it on `test` ones; both lists of (key, [(name, box)], image).
    Returns train/test accuracy, object counts, test objects of names `names` lacks, and
    (key, name, guess) per scored test object."""
    import torch

    index = {n: i for i, n in enumerate(names)}

    def features(samples):
        xs, ys, keys = [], [], []
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            feats = object_features(encoder, [s[2] for s in chunk], [[box for _, box in s[1]] for s in chunk])
            for (key, objects, _), image_feats in zip(chunk, feats):
                for (name, _), f in zip(objects, image_feats):
                    if f is not None and name in index:
                        xs.append(f)
                        ys.append(index[name])
                        keys.append(key)
        return torch.stack(xs), torch.tensor(ys), keys

    train_x, train_y, _ = features(train)
    test_x, test_y, test_keys = features(test)
    classify = fit_linear_probe(train_x, train_y, len(names))
    guesses = classify(test_x)
    unseen = sum(name not in index for _, objects, _ in test for name, _ in objects)
    return {"train": (classify(train_x) == train_y).float().mean().item(),
            "test": (guesses == test_y).float().mean().item(), "n_train": len(train_y), "n_test": len(test_y),
            "unseen": unseen,
            "guesses": [(k, names[t], names[g]) for k, t, g in zip(test_keys, test_y.tolist(), guesses.tolist())]}


def _objects_of(shards: list[Path], limit: int) -> Iterator[tuple[str, list, object]]:
    """(key, [(name, box)], PIL image) of the images whose json lists objects with boxes, in shard order."""
    from train.stages.image_batches import image_reader

    n = 0
    for s in image_reader(shards, rank=0, world_size=1, seed=0, shuffle=False, epochs=1):
        objects = [(o["name"], tuple(o["box"])) for o in s["json"].get("objects", []) if o.get("box") and o.get("name")]
        if not objects:
            continue
        yield s["key"], objects, s["image"]
        n += 1
        if limit and n >= limit:
            return


__all__ = ["register", "run", "load_encoder", "object_features", "fit_linear_probe", "probe_objects"]
