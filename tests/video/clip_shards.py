"""Tiny clip–caption shards in the `data/build_video.py` format (imported by name by the video
stage and eval tests): a coloured square moving left or right on a pale background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOTIONS = ("left", "right")
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 180, 60)}


def square_clip(colour: str, motion: str, *, frames: int = 8, canvas: int = 32, offset: int = 0) -> np.ndarray:
    """[frames, canvas, canvas, 3] uint8: a `colour` square crossing the frame towards `motion`."""
    out = np.full((frames, canvas, canvas, 3), 235, np.uint8)
    side = canvas // 4
    for i in range(frames):
        x = round((i / max(frames - 1, 1)) * (canvas - side))
        x = x if motion == "right" else canvas - side - x
        y = (canvas - side) // 2 + offset
        out[i, y:y + side, x:x + side] = COLOURS[colour]
    return out


def write_clip_shards(root: Path, counts: dict[str, int], *, frames: int = 8, bad: int = 0, short: int = 0) -> Path:
    """Shards {split}-*.tar + manifest.json with counts[split] clips each; `bad` extra train
    samples whose mp4 is not a video and `short` extra train clips of 3 frames. Returns root."""
    from data.build_video import encode_mp4
    from data.shards import write_manifest, write_shards

    splits = {}
    for s, (split, n) in enumerate(counts.items()):
        def samples():
            for i in range(n):
                colour, motion = list(COLOURS)[(i // 2) % len(COLOURS)], MOTIONS[i % 2]
                clip = square_clip(colour, motion, frames=frames, offset=(i + s) % 5 - 2)
                yield {"__key__": f"{split}-{i:05d}", "mp4": encode_mp4(clip), "json": {
                    "captions": [f"a {colour} square moves {motion}"], "motion": motion,
                    "object": f"{colour} square", "source": "test"}}
            if split == "train":
                for i in range(short):
                    yield {"__key__": f"{split}-short-{i}", "mp4": encode_mp4(square_clip("red", "left", frames=3)),
                           "json": {"captions": ["a red square moves left"], "motion": "left",
                                    "object": "red square", "source": "test"}}
                for i in range(bad):
                    yield {"__key__": f"{split}-bad-{i}", "mp4": b"not a video",
                           "json": {"captions": ["nothing"], "motion": "left", "object": "x", "source": "test"}}
        splits[split] = write_shards(samples(), root, split)
    write_manifest(root, kind="video", splits=splits, sources=[], extra={"frames": frames})
    return root
