"""Real sprites (emoji, Tux Paint stamps) and compositional scenes built from them.

Sprites: `load_emoji` renders every fully-qualified emoji of `NotoColorEmoji.ttf` (a CBDT bitmap
font: Pillow loads it only at size 109, drawn with `embedded_color=True`, then downscaled) and names
it with its CLDR name from the `emoji` package; identical renders are merged, their names kept as
alternative captions. `load_stamps` reads Tux Paint stamps (PNG, or the SVG rasterised with cairosvg
when there is no PNG) with the first line of the `.txt` beside each as caption. Both are cached as
PNGs under `cache/sprites/` so the image and video builders share one load.

Scenes (`render_scene`): 1–3 distinct sprites on a plain coloured canvas, each with a size class
(small/medium/large, from the sprite's longest side relative to the canvas), an optional colour
tint (`ImageOps.colorize` of the sprite's luminance, so "a red dog" is red), and for two or three
objects a spatial relation that holds strictly: "A left of B" means A's box ends left of where B's
begins and their vertical centres differ by at most a quarter of the canvas (likewise above/below).
Captions and question–answer pairs are generated from that record, never from the picture, and
the record travels in the sample's json so a test can re-check every caption.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["Sprite", "load_emoji", "load_stamps", "scene_name", "stable_fraction", "tintable", "tint",
           "TINTS", "BACKGROUNDS", "SIZE_CLASSES", "render_scene", "describe", "article", "NUMBER_WORDS"]

TINTS = {"red": (215, 40, 40), "green": (40, 150, 60), "blue": (40, 80, 215),
         "yellow": (230, 195, 20), "purple": (135, 55, 175), "orange": (240, 130, 20)}
"""Colours an object may be tinted with (named in its caption)."""
BACKGROUNDS = {"white": (255, 255, 255), "grey": (200, 200, 200), "pink": (250, 205, 215),
               "light blue": (200, 225, 250), "light green": (210, 240, 205), "beige": (240, 230, 200)}
"""Canvas colours (pale, so every tint stays visible)."""
SIZE_CLASSES = {"small": (0.20, 0.26), "medium": (0.30, 0.36), "large": (0.42, 0.50)}
"""Longest side of an object's box as a fraction of the canvas side; medium is not named."""
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_CACHE_VERSION = 2  # bump when sprite preprocessing changes: cached sprites are rebuilt
_COLOUR_WORDS = set(TINTS) | {"brown", "black", "white", "pink", "grey", "gray", "colorful", "golden",
                              "silver", "rainbow"}


@dataclass(eq=False)
class Sprite:
    """One real image with its caption(s); `image` is RGBA cropped to its content.

    A sprite read back from the cache decodes its PNG on first use of `image`, so a build that
    draws a few hundred sprites does not decode all ~4,700.
    """

    key: str  # stable id, e.g. "emoji:1f424" or "tuxpaint:animals/mammals/giraffe"
    captions: tuple[str, ...]  # captions of the sprite alone ("a baby chick", "A giraffe.")
    source: str  # "emoji" | "tuxpaint"
    name: str | None = None  # short lower-case noun for scenes ("giraffe"), None if unsuitable
    cutout: bool = True  # transparent background (photos are not): usable in scenes and clips
    _image: Image.Image | None = field(default=None, repr=False)
    _path: Path | None = field(default=None, repr=False)

    @property
    def image(self) -> Image.Image:
        if self._image is None:
            img = Image.open(self._path)
            img.load()
            self._image = img
        return self._image


def article(noun: str) -> str:
    """'a dog', 'an apple', 'some sunglasses' (a plural emoji name takes 'some')."""
    last = noun.split()[-1] if noun else noun
    if last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return f"some {noun}"
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def tintable(name: str) -> bool:
    """Whether a colour tint may be named for this object ("red apple" already has a colour)."""
    return not (set(name.split()) & _COLOUR_WORDS)


def stable_fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) from strings: split assignment that never depends on order."""
    digest = hashlib.sha1("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def scene_name(caption: str) -> str | None:
    """'A giraffe.' -> 'giraffe'; None unless it is one or two lower-case words."""
    match = re.fullmatch(r"(?:[Aa]n?\s+)?([a-z]+(?: [a-z]+)?)\.?", caption.strip())
    return match.group(1) if match else None


# ----------------------------------------------------------------------------------------- sprites

def _emoji_caption(char: str, name: str) -> str:
    if all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char) or char.startswith("\U0001F3F4\U000E0067"):
        return f"the flag of {name}"
    name = re.sub(r" ((?:medium-)?(?:light|dark|medium) skin tone)", r", \1", name)
    return article(name)


def _fit(img: Image.Image, size: int) -> Image.Image:
    """Crop to the non-transparent content and shrink so the longest side is at most `size`."""
    # bbox of clearly visible pixels: some stamps carry a faint alpha haze around the drawing
    box = img.getchannel("A").point(lambda a: 255 if a > 24 else 0).getbbox() if img.mode == "RGBA" else None
    if box:
        img = img.crop(box)
    img = img.copy()
    img.thumbnail((size, size), Image.LANCZOS)
    return img


def _cache_dir(cache: Path | None, tag: str) -> Path | None:
    return None if cache is None else Path(cache) / "sprites" / f"{tag}-v{_CACHE_VERSION}"


def _save_sprites(folder: Path | None, sprites: list[Sprite]) -> None:
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for i, s in enumerate(sprites):
        s.image.save(folder / f"{i:05d}.png")
        index.append({"key": s.key, "captions": list(s.captions), "source": s.source, "name": s.name,
                      "cutout": s.cutout, "file": f"{i:05d}.png"})
    tmp = folder / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    tmp.replace(folder / "index.json")


def _load_cached(folder: Path | None) -> list[Sprite] | None:
    if folder is None or not (folder / "index.json").is_file():
        return None
    out = []
    for rec in json.loads((folder / "index.json").read_text()):
        out.append(Sprite(rec["key"], tuple(rec["captions"]), rec["source"], rec["name"], rec["cutout"],
                          _path=folder / rec["file"]))
    return out


def load_emoji(font_path: Path, *, size: int = 96, cache: Path | None = None) -> list[Sprite]:
    """Every fully-qualified emoji the font renders, as RGBA sprites (longest side `size`)."""
    import emoji

    folder = _cache_dir(cache, f"emoji-{size}-{hashlib.sha1(str(font_path).encode()).hexdigest()[:8]}")
    cached = _load_cached(folder)
    if cached is not None:
        return cached
    font = ImageFont.truetype(str(font_path), 109)
    fully = emoji.STATUS["fully_qualified"]
    by_pixels: dict[bytes, tuple[str, list[str], Image.Image, list[str]]] = {}
    for char, data in emoji.EMOJI_DATA.items():
        if data["status"] != fully:
            continue
        name = data["en"].strip(":").replace("_", " ")
        canvas = Image.new("RGBA", (160, 136))
        ImageDraw.Draw(canvas).text((4, 4), char, font=font, embedded_color=True)
        box = canvas.getbbox()
        # An unsupported sequence falls apart into several glyphs (too wide) or draws nothing.
        if box is None or box[2] - box[0] > 136:
            continue
        digest = hashlib.sha1(canvas.tobytes()).digest()
        if digest in by_pixels:
            by_pixels[digest][1].append(_emoji_caption(char, name))
            by_pixels[digest][3].append(name)
        else:
            by_pixels[digest] = (char, [_emoji_caption(char, name)], canvas, [name])
    sprites = []
    for char, captions, canvas, names in by_pixels.values():
        key = "emoji:" + "-".join(f"{ord(c):x}" for c in char)
        name = names[0] if re.fullmatch(r"[a-z]+(?: [a-z]+)?", names[0]) else None
        sprites.append(Sprite(key, tuple(dict.fromkeys(captions)), "emoji", name, _image=_fit(canvas, size)))
    _save_sprites(folder, sprites)
    return sprites


def load_stamps(stamps_root: Path, *, size: int = 96, cache: Path | None = None) -> list[Sprite]:
    """Tux Paint stamps: PNG (or SVG via cairosvg) beside a `.txt` whose first line is the caption."""
    folder = _cache_dir(cache, f"tuxpaint-{size}-{hashlib.sha1(str(stamps_root).encode()).hexdigest()[:8]}")
    cached = _load_cached(folder)
    if cached is not None:
        return cached
    stamps_root = Path(stamps_root)
    sprites = []
    for txt in sorted(stamps_root.rglob("*.txt")):
        base = txt.with_suffix("")
        caption = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        if not caption:
            continue
        if base.with_suffix(".png").is_file():
            img = Image.open(base.with_suffix(".png"))
            img.draft("RGB", (size * 2, size * 2))
            img = img.convert("RGBA")
        elif base.with_suffix(".svg").is_file():
            import cairosvg

            try:  # unsafe=True: Illustrator SVGs declare XML entities; these are local package files
                png = cairosvg.svg2png(url=str(base.with_suffix(".svg")), output_width=size * 2, unsafe=True)
            except Exception:  # noqa: BLE001 - a drawing cairosvg cannot render is left out
                continue
            img = Image.open(io.BytesIO(png)).convert("RGBA")
        else:
            continue
        alpha = np.asarray(img.getchannel("A"))
        cutout = bool((alpha < 16).mean() > 0.05)
        key = "tuxpaint:" + base.relative_to(stamps_root).as_posix()
        name = scene_name(caption) if cutout else None
        sprites.append(Sprite(key, (caption,), "tuxpaint", name, cutout, _image=_fit(img, size)))
    _save_sprites(folder, sprites)
    return sprites


# ------------------------------------------------------------------------------------------ scenes

def tint(img: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """Recolour an RGBA sprite in one hue (its luminance mapped dark→colour→light), alpha kept."""
    dark = tuple(int(c * 0.35) for c in colour)
    light = tuple(int(c + (255 - c) * 0.6) for c in colour)
    rgb = ImageOps.colorize(ImageOps.autocontrast(img.convert("L")), dark, light, mid=colour)
    rgb.putalpha(img.getchannel("A"))
    return rgb


def _scaled(sprite: Sprite, side: int) -> Image.Image:
    img = sprite.image
    scale = side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)


def _phrase(obj: dict) -> str:
    words = [w for w in (obj["size"] if obj["size"] != "medium" else None, obj["color"]) if w]
    return article(" ".join(words + [obj["name"]]))


def _place(sizes: list[tuple[int, int]], layout: str, canvas: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners so that the boxes follow `layout` strictly (see module docstring)."""
    axis = 0 if layout in ("row", "pair-h", "single") else 1
    along = [s[axis] for s in sizes]
    slack = canvas - sum(along) - 2 * (len(sizes) - 1)
    if slack < 0:
        raise ValueError("objects do not fit")
    cuts = np.sort(rng.integers(0, slack + 1, size=len(sizes) + 1))
    gaps = np.diff(np.concatenate([[0], cuts[:-1], [slack]]))[: len(sizes)]
    pos, corners = 0, []
    across_centre = rng.integers(canvas // 4, canvas - canvas // 4 + 1)
    for (w, h), gap, a in zip(sizes, gaps, along):
        pos += int(gap)
        other = h if axis == 0 else w
        jitter = int(rng.integers(-canvas // 8, canvas // 8 + 1)) if len(sizes) > 1 else 0
        start = int(np.clip(across_centre + jitter - other // 2, 0, canvas - other))
        if len(sizes) == 1:
            start = int(rng.integers(0, canvas - other + 1))
        corners.append((pos, start) if axis == 0 else (start, pos))
        pos += a + 2
    return corners


def render_scene(sprites: list[Sprite], *, canvas: int, rng: np.random.Generator, layout: str,
                 colors: list[str | None], sizes: list[str], background: str) -> tuple[Image.Image, dict]:
    """Draw `sprites` (distinct names) on a `canvas`-pixel square; return the image and its record.

    `layout`: "single" (1 object), "pair-h"/"pair-v" (2: first left of / above second), "row"/"column"
    (3, left-to-right / top-to-bottom). The record holds objects (name, sprite key, colour, size,
    box), layout, background, captions and qa.
    """
    rendered, objects = [], []
    for sprite, colour, size in zip(sprites, colors, sizes):
        lo, hi = SIZE_CLASSES[size]
        side = max(4, round(canvas * rng.uniform(lo, hi)))
        img = _scaled(sprite, side)
        if colour is not None:
            img = tint(img, TINTS[colour])
        rendered.append(img)
        objects.append({"name": sprite.name, "sprite": sprite.key, "source": sprite.source,
                        "color": colour, "size": size})
    corners = _place([im.size for im in rendered], layout, canvas, rng)
    image = Image.new("RGBA", (canvas, canvas), BACKGROUNDS[background] + (255,))
    for img, (x, y), obj in zip(rendered, corners, objects):
        image.alpha_composite(img, (x, y))
        obj["box"] = [x, y, x + img.width, y + img.height]
    record = {"objects": objects, "layout": layout, "background": background}
    record["captions"], record["qa"] = describe(record)
    return image.convert("RGB"), record


def describe(record: dict) -> tuple[list[str], list[dict]]:
    """Captions and question–answer pairs that the record (not the pixels) makes true."""
    objs, layout, bg = record["objects"], record["layout"], record["background"]
    p = [_phrase(o) for o in objs]
    names = [o["name"] for o in objs]
    qa = [{"q": "How many objects are there?", "a": NUMBER_WORDS[len(objs)]},
          {"q": "What colour is the background?", "a": bg}]
    if layout == "single":
        captions = [p[0], f"{p[0]} on a {bg} background"]
        qa.append({"q": "What is in the picture?", "a": article(names[0])})
    elif layout in ("pair-h", "pair-v"):
        rel, inv = ("to the left of", "to the right of") if layout == "pair-h" else ("above", "below")
        short, short_inv = ("left of", "right of") if layout == "pair-h" else ("above", "below")
        captions = [f"{p[0]} {rel} {p[1]}", f"{p[1]} {inv} {p[0]}", f"{p[0]} {rel} {p[1]} on a {bg} background"]
        qa += [{"q": f"What is {short} the {names[1]}?", "a": article(names[0])},
               {"q": f"What is {short_inv} the {names[0]}?", "a": article(names[1])},
               {"q": f"Is the {names[0]} {short} or {short_inv} the {names[1]}?", "a": short}]
        big = {"small": 0, "medium": 1, "large": 2}
        if objs[0]["size"] != objs[1]["size"]:
            winner = names[0] if big[objs[0]["size"]] > big[objs[1]["size"]] else names[1]
            qa.append({"q": f"Which is bigger, the {names[0]} or the {names[1]}?", "a": f"the {winner}"})
    else:
        order, first, last = ("from left to right", "left", "right") if layout == "row" else ("from top to bottom", "top", "bottom")
        captions = [f"{order}: {p[0]}, {p[1]} and {p[2]}", f"{p[1]} between {p[0]} and {p[2]}"]
        qa += [{"q": "What is in the middle?", "a": article(names[1])},
               {"q": f"What is at the {first}?", "a": article(names[0])},
               {"q": f"What is at the {last}?", "a": article(names[2])},
               {"q": f"What is between the {names[0]} and the {names[2]}?", "a": article(names[1])}]
    for o in objs:
        if o["color"] is not None:
            qa.append({"q": f"What colour is the {o['name']}?", "a": o["color"]})
    return captions, qa
