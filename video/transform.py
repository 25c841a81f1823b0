"""Decoded frames → encoder input: each frame through the image transform as one tile
(llama3-spec §4: every sampled frame is encoded by the image encoder on its own).

    transform = VideoTransform(tile_size=56)
    pixels, ratio_ids = transform(read_frames(mp4, 8))   # [8, 1, 3, 56, 56], [8] (all 1)

One tile per frame keeps the frame's tokens few and free of padding tiles; the frame is resized
(aspect kept, padded) to the tile by `vision.transforms.ImageTransform(tile_size, max_tiles=1)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vision.transforms import ImageTransform


class VideoTransform:
    """uint8 frames [F, H, W, 3] → (pixels [F, 1, 3, t, t] normalised, ratio_ids [F] long)."""

    def __init__(self, tile_size: int):
        self.image = ImageTransform(tile_size, max_tiles=1)

    def __call__(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        tiles = [self.image(frame.permute(2, 0, 1)) for frame in frames]
        pixels = torch.stack([t.pixels for t in tiles])
        return pixels, torch.tensor([t.ratio_id for t in tiles], dtype=torch.long)


__all__ = ["VideoTransform"]
