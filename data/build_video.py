"""`herd data build video`: short clip–caption shards of real sprites in motion.

No labelled real video exists in the package registries, so clips are animated from real pictures
(`reference/data-sources.md`): every sample is an `mp4` (H.264 through PyAV, yuv420p, `canvas`²
pixels, `frames` frames at 8 fps) + `json` {"captions", "motion", "object", "source", ...}.

- **sprite clips**: an emoji / Tux Paint sprite from the scene vocabulary of the images build moves
  left/right/up/down, grows, shrinks or turns (counter)clockwise on a pale background ("a giraffe
  moves left"). `motion` is one of `MOTIONS`.
- **xpenguins clips** (Debian `xpenguins`, GPL): the theme sprite sheets (penguins, turtles, Bill),
  cut into frames by the theme's `config`, animated in place or travelling as the action does
  ("a turtle walks right"); json adds `action` (walker, climber, faller, …) and the theme.

Held out for test (never in train/validation): sprite (name, motion) pairs with
`stable_fraction("motion", name, motion) < HELDOUT_FRACTION`, and xpenguins (theme, action) pairs
with `stable_fraction("action", theme, action) < HELDOUT_FRACTION`. Every test clip is such a pair;
validation clips are seen pairs with fresh renders.
"""

from __future__ import annotations

import io
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from data.build_images import SPLITS, load_sprites, scene_vocabulary, sources
from data.scenes import BACKGROUNDS, Sprite, article, stable_fraction

__all__ = ["PRESETS", "VideoPreset", "MOTIONS", "build", "encode_mp4", "heldout_motion", "heldout_action",
           "load_xpenguins", "ToonAction"]

XPENGUINS_PACKAGE = "xpenguins"
HELDOUT_FRACTION = 0.2
MOTIONS = {"left": "moves left", "right": "moves right", "up": "moves up", "down": "moves down",
           "grow": "grows", "shrink": "shrinks", "rotate_cw": "turns clockwise",
           "rotate_ccw": "turns counterclockwise"}
"""Sprite motion label -> caption verb phrase."""


@dataclass(frozen=True, kw_only=True)
class VideoPreset:
    """Sizes of a video build."""

    canvas: int
    """Frame side in pixels (even, for yuv420p)."""
    frames: int
    """Frames per clip (8–16)."""
    vocabulary: int | None
    """Sprite names clips draw from (None: the whole scene vocabulary)."""
    sprite_clips: dict[str, int]
    """Sprite clips per split."""
    penguin_renders: dict[str, int]
    """Clips per xpenguins (toon, action, direction), per split. Train gets many: its 46 animations
    are few next to the sprite clips, and at 4 renders (2 % of the clips) the tiny video-adapter
    never learned to name a penguin (measured 2026-12-05, see configs/tiny/video_adapter.toml)."""


PRESETS = {
    "micro": VideoPreset(canvas=64, frames=8, vocabulary=16,
                         penguin_renders={"train": 1, "validation": 1, "test": 1},
                         sprite_clips={"train": 24, "validation": 8, "test": 8}),
    "tiny": VideoPreset(canvas=64, frames=8, vocabulary=32,
                        penguin_renders={"train": 20, "validation": 1, "test": 4},
                        sprite_clips={"train": 8000, "validation": 80, "test": 120}),
    "full": VideoPreset(canvas=96, frames=16, vocabulary=None,
                        penguin_renders={"train": 100, "validation": 5, "test": 20},
                        sprite_clips={"train": 20000, "validation": 1000, "test": 2000}),
}


def heldout_motion(name: str, motion: str) -> bool:
    """Whether sprite `name` doing `motion` is reserved for the test split."""
    return stable_fraction("motion", name, motion) < HELDOUT_FRACTION


def heldout_action(theme: str, action: str) -> bool:
    """Whether xpenguins `theme` doing `action` is reserved for the test split."""
    return stable_fraction("action", theme, action) < HELDOUT_FRACTION


def encode_mp4(frames: np.ndarray, *, fps: int = 8) -> bytes:
    """[N, H, W, 3] uint8 -> H.264 mp4 bytes (one thread, bit-exact flags: reproducible)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- sprite clips

def sprite_frames(sprite: Sprite, motion: str, cfg: VideoPreset, rng: np.random.Generator) -> np.ndarray:
    """Frames of `sprite` doing `motion` over a random pale background."""
    c, n = cfg.canvas, cfg.frames
    bg = BACKGROUNDS[str(rng.choice(list(BACKGROUNDS)))] + (255,)
    t = np.linspace(0.0, 1.0, n)
    base = round(c * rng.uniform(0.3, 0.45))
    cx, cy = rng.uniform(0.35, 0.65, size=2) * c
    travel = c * rng.uniform(0.35, 0.55)
    scale, angle = np.ones(n), np.zeros(n)
    xs, ys = np.full(n, cx), np.full(n, cy)
    if motion in ("left", "right", "up", "down"):
        sign = -1.0 if motion in ("left", "up") else 1.0
        track = c / 2 + sign * travel * (t - 0.5)
        if motion in ("left", "right"):
            xs = track
        else:
            ys = track
    elif motion in ("grow", "shrink"):
        lo, hi = 0.45, 1.3
        scale = lo + (hi - lo) * (t if motion == "grow" else 1 - t)
    else:  # rotate: up to 270 degrees, PIL's angle is counterclockwise
        angle = (1 if motion == "rotate_ccw" else -1) * rng.uniform(180, 270) * t
    out = np.empty((n, c, c, 3), np.uint8)
    for i in range(n):
        side = max(2, round(base * scale[i]))
        k = side / max(sprite.image.size)
        img = sprite.image.resize((max(1, round(sprite.image.width * k)), max(1, round(sprite.image.height * k))),
                                  Image.LANCZOS)
        if angle[i]:
            img = img.rotate(float(angle[i]), resample=Image.BICUBIC, expand=True)
        frame = Image.new("RGBA", (c, c), bg)
        # paste with the alpha mask: clips at the borders (alpha_composite refuses negative offsets)
        frame.paste(img, (int(round(xs[i] - img.width / 2)), int(round(ys[i] - img.height / 2))), img)
        out[i] = np.asarray(frame.convert("RGB"))
    return out


def sprite_clips(vocab: dict[str, list[Sprite]], split: str, count: int, cfg: VideoPreset,
                 rng: np.random.Generator) -> Iterator[dict]:
    pairs = [(name, m) for name in vocab for m in MOTIONS if heldout_motion(name, m) == (split == "test")]
    for _ in range(count):
        name, motion = pairs[int(rng.integers(len(pairs)))]
        sprite = vocab[name][int(rng.integers(len(vocab[name])))]
        frames = sprite_frames(sprite, motion, cfg, rng)
        obj = article(name)
        yield {"mp4": encode_mp4(frames), "json": {
            "captions": [f"{obj} {MOTIONS[motion]}", f"{obj} that {MOTIONS[motion]}"],
            "motion": motion, "object": name, "sprite": sprite.key, "source": "sprite",
            "qa": [{"q": f"How does the {name} move?", "a": MOTIONS[motion].replace("moves ", "")}]}}


# ------------------------------------------------------------------------------------- xpenguins

@dataclass(frozen=True)
class ToonAction:
    """One animated action of an xpenguins theme: frames[direction][i] are RGBA images."""

    theme: str
    action: str  # the config's name: walker, climber, faller, ..., action0
    pixmap: str  # the sheet's file stem (reader, digger, ...)
    frames: tuple[tuple[Image.Image, ...], ...]
    speed: int


# action (or pixmap stem for action0/alternates) -> (caption verb phrase per direction, motion per direction)
_ACTIONS = {
    "walker": ("walks {dir}", "{dir}"), "runner": ("runs {dir}", "{dir}"),
    "skateboarder": ("skateboards {dir}", "{dir}"), "climber": ("climbs up", "up"),
    "climber_skateboarder": ("climbs up", "up"), "faller": ("falls down", "down"),
    "ballooner": ("floats down under a balloon", "down"), "tumbler": ("tumbles down", "down"),
    "floater": ("floats up under an umbrella", "up"), "superpenguin": ("flies up", "up"),
    "angel": ("rises as an angel", "up"), "exit": ("explodes", "none"), "bomber": ("explodes", "none"),
    "zapped": ("gets zapped", "none"), "splatted": ("gets squashed", "none"), "squashed": ("gets squashed", "none"),
    "reader": ("reads a book", "none"), "digger": ("digs a hole", "none"), "hacker": ("types at a computer", "none"),
}
_THEME_OBJECTS = {"Penguins": "penguin", "Big_Penguins": "penguin", "Classic_Penguins": "penguin",
                  "Turtles": "turtle", "Bill": "man"}


def _parse_config(text: str) -> list[dict]:
    """The `define NAME key value ...` blocks of an xpenguins theme config, `define default` applied."""
    tokens = re.sub(r"#[^\n]*", " ", text).split()
    ints = ("width", "height", "frames", "directions", "speed")
    default = {"width": 30, "height": 30, "frames": 1, "directions": 1, "speed": 4}
    defs: list[dict] = []
    current: dict | None = None
    i = 0
    while i + 1 < len(tokens):
        key, value = tokens[i], tokens[i + 1]
        if key == "define":
            current = default if value == "default" else {"name": value}
            if current is not default:
                defs.append(current)
        elif key in ("toon", "delay", "number"):
            current = None
        elif current is not None:
            current[key] = int(value) if key in ints and value.lstrip("-").isdigit() else value
        i += 2
    return [{**default, **d} for d in defs if "pixmap" in d]


def _read_xpm(path: Path, cache: Path | None) -> Image.Image:
    """Pillow reads most XPMs; ffmpeg reads the rest (11 of 55 use colour names Pillow lacks).

    The ffmpeg result is kept as PNG under `cache/sprites/xpenguins/` (one subprocess, once).
    """
    try:
        img = Image.open(path)
        img.load()
        return img.convert("RGBA")
    except (OSError, ValueError, SyntaxError):
        pass
    kept = None if cache is None else Path(cache) / "sprites" / "xpenguins" / path.parent.name / f"{path.stem}.png"
    if kept is not None and kept.is_file():
        return Image.open(kept).convert("RGBA")
    try:
        png = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "image2pipe", "-vcodec", "png", "-"],
                             capture_output=True, check=True).stdout
    except FileNotFoundError:
        raise RuntimeError(f"ffmpeg is needed to read {path.name} (apt-get install ffmpeg)") from None
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(png)
    return Image.open(io.BytesIO(png)).convert("RGBA")


def load_xpenguins(root: Path, cache: Path | None = None) -> list[ToonAction]:
    """Every multi-frame action of every theme under `root` (…/usr/share/xpenguins/themes)."""
    actions, seen = [], set()
    for theme_dir in sorted(p for p in Path(root).iterdir() if (p / "config").is_file()):
        for d in _parse_config((theme_dir / "config").read_text(errors="replace")):
            stem = Path(d["pixmap"]).stem
            key = (theme_dir.name, stem)
            if d["frames"] < 2 or key in seen or not (theme_dir / d["pixmap"]).is_file():
                continue
            if d["name"] not in _ACTIONS and stem not in _ACTIONS:
                continue
            seen.add(key)
            sheet = _read_xpm(theme_dir / d["pixmap"], cache)
            w, h = d["width"], d["height"]
            dirs = min(d["directions"], sheet.height // h)
            frames = tuple(tuple(sheet.crop((i * w, r * h, (i + 1) * w, (r + 1) * h)) for i in range(d["frames"]))
                           for r in range(dirs))
            name = stem if stem in _ACTIONS and d["name"] not in ("walker", "climber") else d["name"]
            actions.append(ToonAction(theme_dir.name, name, stem, frames, d["speed"]))
    return actions


def penguin_frames(toon: ToonAction, direction: int, motion: str, cfg: VideoPreset,
                   rng: np.random.Generator) -> np.ndarray:
    """The action's frames cycled from a random phase, travelling `motion` if it moves."""
    c, n = cfg.canvas, cfg.frames
    bg = BACKGROUNDS[str(rng.choice(list(BACKGROUNDS)))] + (255,)
    cells = toon.frames[direction]
    zoom = rng.uniform(0.45, 0.6) * c / max(cells[0].size)
    size = (max(1, round(cells[0].width * zoom)), max(1, round(cells[0].height * zoom)))
    travel = c * rng.uniform(0.3, 0.45)
    phase = int(rng.integers(len(cells)))
    t = np.linspace(-0.5, 0.5, n)
    xs, ys = np.full(n, c / 2 + rng.uniform(-0.1, 0.1) * c), np.full(n, c / 2 + rng.uniform(-0.1, 0.1) * c)
    if motion in ("left", "right"):
        xs = c / 2 + (1 if motion == "right" else -1) * travel * t
    elif motion in ("up", "down"):
        ys = c / 2 + (1 if motion == "down" else -1) * travel * t
    out = np.empty((n, c, c, 3), np.uint8)
    for i in range(n):
        img = cells[(phase + i) % len(cells)].resize(size, Image.NEAREST)
        frame = Image.new("RGBA", (c, c), bg)
        frame.paste(img, (int(round(xs[i] - size[0] / 2)), int(round(ys[i] - size[1] / 2))), img)
        out[i] = np.asarray(frame.convert("RGB"))
    return out


def penguin_clips(toons: list[ToonAction], split: str, renders: int, cfg: VideoPreset,
                  rng: np.random.Generator) -> Iterator[dict]:
    """`renders` clips of every (toon, action, direction): train and validation get the seen
    (theme, action) pairs, test the held-out ones."""
    mine = [t for t in toons if heldout_action(t.theme, t.action) == (split == "test")]
    for _ in range(renders):
        for toon in mine:
            for direction in range(len(toon.frames)):
                phrase, motion = _ACTIONS[toon.action]
                side = "left" if direction == 0 else "right"  # xpenguins sheets: row 0 faces left
                phrase, motion = phrase.format(dir=side), motion.format(dir=side)
                frames = penguin_frames(toon, direction, motion, cfg, rng)
                obj = article(_THEME_OBJECTS.get(toon.theme, "penguin"))
                yield {"mp4": encode_mp4(frames), "json": {
                    "captions": [f"{obj} {phrase}"], "motion": motion, "action": toon.action,
                    "object": _THEME_OBJECTS.get(toon.theme, "penguin"), "theme": toon.theme,
                    "source": "xpenguins", "qa": [{"q": "What is it doing?", "a": phrase}]}}


# ----------------------------------------------------------------------------------------- build

def build(out_dir: Path, *, preset: str, seed: int, cache: Path) -> dict:
    """Build video shards for `preset` into `out_dir`; return the manifest dict."""
    from data.debian import fetch_debian
    from data.shards import read_manifest, write_manifest, write_shards

    if preset not in PRESETS:
        raise ValueError(f"unknown video preset {preset!r} (have {', '.join(PRESETS)})")
    cfg = PRESETS[preset]
    out_dir = Path(out_dir)
    vocab = scene_vocabulary(load_sprites(cache, size=96), cfg.vocabulary)
    toons = load_xpenguins(fetch_debian(XPENGUINS_PACKAGE, cache) / "usr/share/xpenguins/themes", cache)
    splits, counts = {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 100 + index])
        counts[split] = {"sprite": 0, "xpenguins": 0}

        def keyed(tag: str, it: Iterator[dict]) -> Iterator[dict]:
            for sample in it:
                counts[split][tag] += 1
                sample["__key__"] = f"{split}-{tag}-{counts[split][tag]:07d}"
                yield sample

        def everything() -> Iterator[dict]:
            yield from keyed("sprite", sprite_clips(vocab, split, cfg.sprite_clips[split], cfg, rng))
            yield from keyed("xpenguins", penguin_clips(toons, split, cfg.penguin_renders[split], cfg, rng))

        splits[split] = write_shards(everything(), out_dir, split, max_size=64 << 20, max_count=2000)
    names = list(vocab)
    extra = {
        "preset": preset, "seed": seed, "canvas": cfg.canvas, "frames": cfg.frames, "fps": 8,
        "counts_by_source": counts, "motions": list(MOTIONS),
        "heldout": {
            "rule": f"test clips are exactly the sprite (name, motion) pairs with stable_fraction('motion', name, "
                    f"motion) < {HELDOUT_FRACTION} and the xpenguins (theme, action) pairs with "
                    f"stable_fraction('action', theme, action) < {HELDOUT_FRACTION}",
            "sprite_pairs": [[n, m] for n in names for m in MOTIONS if heldout_motion(n, m)],
            "xpenguins_pairs": sorted({(t.theme, t.action) for t in toons if heldout_action(t.theme, t.action)}),
        },
        "vocabulary": names,
        "xpenguins_actions": sorted({f"{t.theme}/{t.action}" for t in toons}),
    }
    write_manifest(out_dir, kind="video", splits=splits,
                   sources=sources(cache, ["fonts-noto-color-emoji", "tuxpaint-stamps-default", XPENGUINS_PACKAGE]),
                   extra=extra)
    return read_manifest(out_dir)
