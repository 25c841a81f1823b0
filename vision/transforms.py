"""Image → tiles, by the reference rule (llama3-spec §3.3).

1. Pick the best-fit canvas among every rows × cols tile grid with rows·cols ≤ max_tiles:
   per canvas the scale is min(canvas_h / h, canvas_w / w); if some canvas needs scale ≥ 1 take
   the smallest such scale (least upscaling), otherwise the largest one (least downscaling);
   break ties by the smallest canvas area.
2. Resize without distortion (bilinear, antialiased); upscaling is capped at one tile side unless
   `resize_to_max_canvas`. Pad with black to the bottom and right of the canvas.
3. Normalise with the CLIP mean/std and split into row-major tiles.

`collate_images` batches images of different aspect ratios with padding tiles (and padding
images, aspect-ratio id 0), the input layout `vision.encoder.VisionEncoder` expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def supported_aspect_ratios(max_tiles: int) -> list[tuple[int, int]]:
    """(rows, cols) grids with rows·cols ≤ max_tiles; aspect-ratio id = index + 1."""
    n = max_tiles
    return [(r, c) for r in range(1, n + 1) for c in range(1, n + 1) if r * c <= n]


def best_fit_canvas(height: int, width: int, tile_size: int, max_tiles: int,
                    resize_to_max_canvas: bool = False) -> tuple[int, int]:
    """The (rows, cols) tile grid whose canvas best fits an image of height × width pixels."""
    options = []  # (scale, area, rows, cols)
    for rows, cols in supported_aspect_ratios(max_tiles):
        scale = min(rows * tile_size / height, cols * tile_size / width)
        options.append((scale, rows * cols, rows, cols))
    up = [o for o in options if o[0] >= 1]
    if up:
        target = max(o[0] for o in up) if resize_to_max_canvas else min(o[0] for o in up)
    else:
        target = max(o[0] for o in options)
    _, _, rows, cols = min(o for o in options if o[0] == target)  # ties: smallest area
    return rows, cols


def fit_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Largest size with the image's aspect ratio that fits target_h × target_w."""
    scale_h, scale_w = target_h / height, target_w / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w), target_h), target_w
    return target_h, min(math.floor(width * scale_h), target_w)


@dataclass
class Tiles:
    """One image as tiles. pixels [n_tiles, 3, tile, tile] normalised; grid (rows, cols);
    ratio_id = index + 1 of grid among the supported aspect ratios; scale = canvas pixels per
    image pixel (the image sits at the canvas's top left)."""

    pixels: Tensor
    grid: tuple[int, int]
    ratio_id: int
    scale: float = 1.0


class ImageTransform:
    """PIL image or uint8 tensor [3, H, W] → `Tiles` (the reference resize/pad/normalise/split)."""

    def __init__(self, tile_size: int, max_tiles: int = 4, *, resize_to_max_canvas: bool = False):
        self.tile_size, self.max_tiles = tile_size, max_tiles
        self.resize_to_max_canvas = resize_to_max_canvas
        self.ratios = supported_aspect_ratios(max_tiles)

    def __call__(self, image: Image.Image | Tensor) -> Tiles:
        if isinstance(image, Image.Image):
            image = TF.pil_to_tensor(image.convert("RGB"))
        h, w = image.shape[-2:]
        t = self.tile_size
        rows, cols = best_fit_canvas(h, w, t, self.max_tiles, self.resize_to_max_canvas)
        canvas_h, canvas_w = rows * t, cols * t
        target_h, target_w = canvas_h, canvas_w
        if not self.resize_to_max_canvas:  # upscale at most to one tile side
            target_h, target_w = min(max(h, t), canvas_h), min(max(w, t), canvas_w)
        size = fit_size(h, w, target_h, target_w)
        image = TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR,
                          antialias=True)
        image = TF.to_dtype(image, torch.float32, scale=True)
        image = TF.pad(image, [0, 0, canvas_w - size[1], canvas_h - size[0]], fill=0.0)
        image = TF.normalize(image, list(CLIP_MEAN), list(CLIP_STD))
        tiles = image.view(3, rows, t, cols, t).permute(1, 3, 0, 2, 4).reshape(rows * cols, 3, t, t)
        return Tiles(tiles.contiguous(), (rows, cols), self.ratios.index((rows, cols)) + 1,
                     min(size[0] / h, size[1] / w))


def region_mask(box: tuple[float, float, float, float], tiles: Tiles, patch_size: int, max_tiles: int) -> Tensor:
    """[max_tiles, 1 + g²] bool over the encoder's tokens (class token first in each tile, g = tile /
    patch): the patch tokens whose centres lie inside `box` (x0, y0, x1, y1 in the original image's
    pixels). How a grounded object (a box linked to its phrase) finds its tokens."""
    tile = tiles.pixels.shape[-1]
    rows, cols = tiles.grid
    g = tile // patch_size
    x0, y0, x1, y1 = (v * tiles.scale for v in box)
    centres_x = (torch.arange(cols * g) + 0.5) * patch_size  # canvas pixels
    centres_y = (torch.arange(rows * g) + 0.5) * patch_size
    inside = (((centres_y >= y0) & (centres_y <= y1))[:, None]
              & ((centres_x >= x0) & (centres_x <= x1))[None, :])  # [rows·g, cols·g]
    per_tile = inside.view(rows, g, cols, g).permute(0, 2, 1, 3).reshape(rows * cols, g * g)
    mask = torch.zeros(max_tiles, 1 + g * g, dtype=torch.bool)
    mask[: rows * cols, 1:] = per_tile
    return mask


def collate_images(batch: list[list[Tiles]], max_tiles: int) -> tuple[Tensor, Tensor]:
    """Images per sample → (pixels [B, N, max_tiles, 3, t, t], ratio_ids [B, N]); N is the most
    images in any sample; missing tiles are zeros, missing images have ratio id 0."""
    n_images = max(1, max(len(images) for images in batch))
    tile = next((im.pixels.shape[-1] for images in batch for im in images), 1)
    pixels = torch.zeros(len(batch), n_images, max_tiles, 3, tile, tile)
    ratio_ids = torch.zeros(len(batch), n_images, dtype=torch.long)
    for b, images in enumerate(batch):
        for n, im in enumerate(images):
            pixels[b, n, : im.pixels.shape[0]] = im.pixels
            ratio_ids[b, n] = im.ratio_id
    return pixels, ratio_ids


__all__ = ["region_mask", "CLIP_MEAN", "CLIP_STD", "supported_aspect_ratios", "best_fit_canvas", "fit_size",
           "Tiles", "ImageTransform", "collate_images"]
