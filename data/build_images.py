"""`herd data build images`: image–caption (+QA) shards from real emoji, Tux Paint stamps and scenes.

Three sources, every sample a `png` + `json` ({"captions", "qa", "objects", "source", ...}):

- **emoji** (Debian `fonts-noto-color-emoji` + PyPI `emoji` CLDR names): each distinct emoji on a
  pale canvas at a random scale (60–95 % of the side) and position.
- **tuxpaint** (Debian `tuxpaint-stamps-default`): drawings and photos with their sentence caption.
- **scene**: 1–3 real sprites composed by `data.scenes.render_scene`, captioned from names, tints,
  size classes and spatial relations, with question–answer pairs from the layout.

Splits never leak:
- single sprites are assigned by a hash of the sprite id: 5 % validation, 5 % test, 90 % train;
- scenes use only *train* sprites with a short name (so a scene never shows a held-out sprite);
  unordered object-name pairs with `stable_fraction("pair", a, b) < HELDOUT_PAIR_FRACTION` and
  (name, tint) combinations with `stable_fraction("color", name, tint) < HELDOUT_COLOR_FRACTION`
  never occur in train/validation scenes; every test scene contains a held-out pair (2–3 objects)
  or a held-out tinted object (1 object). Validation scenes are in-distribution (seen combinations).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from data.scenes import (BACKGROUNDS, TINTS, Sprite, load_emoji, load_stamps, render_scene,
                         stable_fraction, tintable)

__all__ = ["PRESETS", "ImagesPreset", "build", "load_sprites", "sprite_split", "scene_vocabulary",
           "heldout_pair", "heldout_color", "SPLITS"]

SPLITS = ("train", "validation", "test")
HELDOUT_PAIR_FRACTION = 0.2
HELDOUT_COLOR_FRACTION = 0.2
EMOJI_PACKAGE = "fonts-noto-color-emoji"
STAMPS_PACKAGE = "tuxpaint-stamps-default"


@dataclass(frozen=True, kw_only=True)
class ImagesPreset:
    """Sizes of an images build."""

    canvas: int
    """Side of every image in pixels."""
    emoji: int | None
    """Train emoji samples (None: every train emoji once per render); val/test take all theirs."""
    stamps: int | None
    """Train Tux Paint samples, as for `emoji`."""
    renders: int
    """Renders (augmented copies) of each single sprite in train."""
    eval_singles: int | None
    """Single-sprite samples per source in validation and test (None: all of that split's sprites)."""
    scenes: dict[str, int]
    """Scene samples per split."""
    vocabulary: int | None
    """Object names scenes draw from (a fixed hash-ordered subset; None: all ~990)."""


PRESETS = {
    "micro": ImagesPreset(canvas=64, emoji=20, stamps=10, renders=1, eval_singles=5, vocabulary=24,
                          scenes={"train": 40, "validation": 10, "test": 20}),
    "tiny": ImagesPreset(canvas=64, emoji=800, stamps=300, renders=1, eval_singles=None, vocabulary=48,
                         scenes={"train": 16000, "validation": 200, "test": 400}),
    "full": ImagesPreset(canvas=128, emoji=None, stamps=None, renders=2, eval_singles=None, vocabulary=None,
                         scenes={"train": 60000, "validation": 2000, "test": 4000}),
}


def sprite_split(key: str) -> str:
    """The split a single sprite belongs to (5 % validation, 5 % test), fixed by its id."""
    f = stable_fraction("item", key)
    return "validation" if f < 0.05 else "test" if f < 0.10 else "train"


def heldout_pair(a: str, b: str) -> bool:
    """Whether the unordered object pair {a, b} is reserved for test scenes/clips."""
    return stable_fraction("pair", *sorted((a, b))) < HELDOUT_PAIR_FRACTION


def heldout_color(name: str, color: str) -> bool:
    """Whether an object tinted `color` is reserved for test scenes."""
    return stable_fraction("color", name, color) < HELDOUT_COLOR_FRACTION


def load_sprites(cache: Path, *, size: int = 96) -> list[Sprite]:
    """Fetch the emoji font and the Tux Paint stamps into `cache` and load every sprite."""
    from data.debian import fetch_debian

    font = fetch_debian(EMOJI_PACKAGE, cache) / "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
    stamps = fetch_debian(STAMPS_PACKAGE, cache) / "usr/share/tuxpaint/stamps"
    return load_emoji(font, size=size, cache=cache) + load_stamps(stamps, size=size, cache=cache)


def scene_vocabulary(sprites: list[Sprite], limit: int | None = None) -> dict[str, list[Sprite]]:
    """Short names of train cutout sprites -> their sprites (a name may have several pictures).

    With `limit`, the `limit` one-word names that also name a Tux Paint stamp ("A koala." — so a
    count noun taking "a"), first in a fixed hash order (the same subset for every seed).
    """
    vocab: dict[str, list[Sprite]] = {}
    for s in sprites:
        if s.name and s.cutout and sprite_split(s.key) == "train":
            vocab.setdefault(s.name, []).append(s)
    names = sorted(vocab, key=lambda n: stable_fraction("vocab", n))
    if limit is not None:
        names = [n for n in names if " " not in n and any(s.source == "tuxpaint" for s in vocab[n])][:limit]
    return {n: vocab[n] for n in sorted(names)}


def sources(cache: Path, packages: list[str], extra: list[dict] = ()) -> list[dict]:
    """Manifest source records (name, version, licence, sha256) of fetched Debian packages."""
    from data.debian import read_cache_manifest

    recorded = read_cache_manifest(cache)["debian"]
    out = [{k: recorded[p][k] for k in ("name", "version", "licence", "sha256") if k in recorded[p]}
           for p in packages if p in recorded]
    return out + list(extra)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------- single sprites

def render_single(sprite: Sprite, canvas: int, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """A sprite alone: cutouts on a pale background at a random scale and position; photos fill."""
    background = str(rng.choice(list(BACKGROUNDS))) if sprite.cutout else "white"
    image = Image.new("RGBA", (canvas, canvas), BACKGROUNDS[background] + (255,))
    side = round(canvas * (rng.uniform(0.6, 0.95) if sprite.cutout else 1.0))
    scale = side / max(sprite.image.size)
    img = sprite.image.resize((max(1, round(sprite.image.width * scale)),
                               max(1, round(sprite.image.height * scale))), Image.LANCZOS)
    x = int(rng.integers(0, canvas - img.width + 1))
    y = int(rng.integers(0, canvas - img.height + 1))
    image.alpha_composite(img, (x, y))
    caption = sprite.captions[0]
    meta = {"captions": list(sprite.captions), "source": sprite.source,
            "qa": [{"q": "What is in the picture?", "a": caption.rstrip(".!")[0].lower() + caption.rstrip(".!")[1:]}],
            "objects": [{"name": sprite.name, "sprite": sprite.key, "box": [x, y, x + img.width, y + img.height]}]}
    return image.convert("RGB"), meta


def single_samples(sprites: list[Sprite], split: str, count: int | None, renders: int, canvas: int,
                   rng: np.random.Generator) -> Iterator[dict]:
    """`count` sprites of `split` (None: all), each rendered `renders` times in train, once otherwise."""
    mine = [s for s in sprites if sprite_split(s.key) == split]
    if count is not None:
        mine = [mine[i] for i in sorted(rng.choice(len(mine), size=min(count, len(mine)), replace=False))]
    for _ in range(renders if split == "train" else 1):
        for sprite in mine:
            img, meta = render_single(sprite, canvas, rng)
            yield {"png": png_bytes(img), "json": meta}


# ---------------------------------------------------------------------------------------- scenes

def _draw_scene_spec(vocab: list[str], split: str, rng: np.random.Generator) -> tuple[list[str], list[str | None]]:
    """Object names and tints for one scene, obeying the split's held-out rules."""
    n = int(rng.choice([1, 2, 3], p=[0.25, 0.5, 0.25]))
    while True:
        names = [str(x) for x in rng.choice(vocab, size=n, replace=False)]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        has_heldout = any(heldout_pair(a, b) for a, b in pairs)
        if split == "test" and n > 1 and not has_heldout:
            continue
        if split != "test" and has_heldout:
            continue
        colors: list[str | None] = []
        for name in names:
            allowed = [c for c in TINTS if tintable(name) and (split == "test" or not heldout_color(name, c))]
            if split == "test" and n == 1:
                allowed = [c for c in allowed if heldout_color(name, c)]
                if not allowed:
                    break
                colors.append(str(rng.choice(allowed)))
            else:
                colors.append(str(rng.choice(allowed)) if allowed and rng.random() < 0.4 else None)
        if len(colors) == n:
            return names, colors


def scene_samples(vocab: dict[str, list[Sprite]], split: str, count: int, canvas: int,
                  rng: np.random.Generator) -> Iterator[dict]:
    names_list = list(vocab)
    for _ in range(count):
        names, colors = _draw_scene_spec(names_list, split, rng)
        n = len(names)
        layout = "single" if n == 1 else str(rng.choice(["pair-h", "pair-v"] if n == 2 else ["row", "column"]))
        sprites = [vocab[name][int(rng.integers(len(vocab[name])))] for name in names]
        background = str(rng.choice(list(BACKGROUNDS)))
        while True:
            pool = ["small", "medium"] if n == 3 else ["small", "medium", "large"]
            sizes = [str(rng.choice(pool)) for _ in names]
            try:
                img, record = render_scene(sprites, canvas=canvas, rng=rng, layout=layout, colors=colors,
                                           sizes=sizes, background=background)
                break
            except ValueError:  # the drawn sizes do not fit along the layout's axis: redraw
                continue
        record["source"] = "scene"
        yield {"png": png_bytes(img), "json": record}


# ----------------------------------------------------------------------------------------- build

def build(out_dir: Path, *, preset: str, seed: int, cache: Path) -> dict:
    """Build image shards for `preset` into `out_dir`; return the manifest dict."""
    from data.shards import write_manifest, write_shards

    import emoji as emoji_pkg

    if preset not in PRESETS:
        raise ValueError(f"unknown images preset {preset!r} (have {', '.join(PRESETS)})")
    cfg = PRESETS[preset]
    out_dir = Path(out_dir)
    sprites = load_sprites(cache, size=max(96, cfg.canvas))  # never upscale a sprite to fill the canvas
    vocab = scene_vocabulary(sprites, cfg.vocabulary)
    emoji_sprites = [s for s in sprites if s.source == "emoji"]
    stamp_sprites = [s for s in sprites if s.source == "tuxpaint"]
    splits, counts = {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, index])
        counts[split] = {}

        def counted(tag: str, it: Iterator[dict]) -> Iterator[dict]:
            for sample in it:
                counts[split][tag] = counts[split].get(tag, 0) + 1
                sample["__key__"] = f"{split}-{tag}-{counts[split][tag]:07d}"
                yield sample

        def everything() -> Iterator[dict]:
            n_emoji, n_stamps = (cfg.emoji, cfg.stamps) if split == "train" else (cfg.eval_singles,) * 2
            yield from counted("emoji", single_samples(emoji_sprites, split, n_emoji, cfg.renders, cfg.canvas, rng))
            yield from counted("tuxpaint", single_samples(stamp_sprites, split, n_stamps, cfg.renders, cfg.canvas, rng))
            yield from counted("scene", scene_samples(vocab, split, cfg.scenes[split], cfg.canvas, rng))

        splits[split] = write_shards(everything(), out_dir, split, max_size=64 << 20, max_count=5000)
    names = list(vocab)
    pairs = [[a, b] for i, a in enumerate(names) for b in names[i + 1:] if heldout_pair(a, b)]
    extra = {
        "preset": preset, "seed": seed, "canvas": cfg.canvas, "counts_by_source": counts,
        "heldout": {
            "rule": "test scenes contain an unordered object pair with stable_fraction('pair', a, b) < "
                    f"{HELDOUT_PAIR_FRACTION} or a (name, tint) with stable_fraction('color', name, tint) < "
                    f"{HELDOUT_COLOR_FRACTION}; train/validation scenes contain neither; single sprites "
                    "split 90/5/5 by stable_fraction('item', sprite id)",
            "num_pairs": len(pairs),
            "pairs": pairs if len(pairs) <= 2000 else "too many to list: apply the rule",
            "colors": [[n, c] for n in names for c in TINTS if tintable(n) and heldout_color(n, c)],
        },
        "scene_vocabulary": names,
    }
    licences = [{"name": "emoji (PyPI)", "version": emoji_pkg.__version__, "licence": "BSD-3-Clause"}]
    write_manifest(out_dir, kind="images", splits=splits,
                   sources=sources(cache, [EMOJI_PACKAGE, STAMPS_PACKAGE], licences), extra=extra)
    from data.shards import read_manifest

    return read_manifest(out_dir)
