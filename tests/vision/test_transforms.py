import pytest
import torch

from vision.transforms import (CLIP_MEAN, CLIP_STD, ImageTransform, best_fit_canvas,
                               collate_images, fit_size, region_mask, supported_aspect_ratios)


@pytest.mark.parametrize("size, expected", [
    # Fits one tile with upscaling (scale 448/300 ≈ 1.49 is the smallest ≥ 1).
    ((300, 300), (1, 1)),
    # Square 1000²: no canvas reaches scale 1; 2×2 gives the least downscaling (0.448·2 = 0.896).
    ((1000, 1000), (2, 2)),
    # 300×800 (h×w), tile 448: 1×2 → min(1.49, 1.12) = 1.12 is the smallest upscale; 1×3 → 1.49.
    ((300, 800), (1, 2)),
    # 800×300: the transpose.
    ((800, 300), (2, 1)),
    # 100×2000: 1×4 → min(4.48, 0.896) is the largest scale, all are < 1.
    ((100, 2000), (1, 4)),
    # 448×448: scale exactly 1 at 1×1 is the smallest scale ≥ 1 (1×2, 2×1, 2×2 also give 1.0 but
    # have larger areas).
    ((448, 448), (1, 1)),
    # 448×896: 1×2 gives scale 1.0 exactly (smallest ≥ 1), 2×2 also 1.0 but larger area.
    ((448, 896), (1, 2)),
])
def test_best_fit_canvas_hand_cases(size, expected):
    assert best_fit_canvas(*size, tile_size=448, max_tiles=4) == expected


def test_best_fit_ties_take_smallest_area_and_max_canvas_option():
    # 224×224 with tile 224: scale 1 at 1×1, 1×2, 2×1, 2×2, … → smallest area 1×1.
    assert best_fit_canvas(224, 224, 224, 4) == (1, 1)
    # resize_to_max_canvas takes the largest upscale instead: 2×2 (scale 2).
    assert best_fit_canvas(224, 224, 224, 4, resize_to_max_canvas=True) == (2, 2)


def test_fit_size_keeps_aspect_ratio():
    assert fit_size(300, 800, 448, 896) == (336, 896)
    assert fit_size(800, 300, 896, 448) == (896, 336)


def test_transform_tiles_padding_and_ratio_id():
    transform = ImageTransform(tile_size=56, max_tiles=4)
    image = torch.full((3, 30, 100), 255, dtype=torch.uint8)  # white, wide
    tiles = transform(image)
    # 30×100, tile 56: 1×2 → min(1.87, 1.12) = 1.12 is the smallest upscale. Upscaling is capped
    # at one tile side, so the target is 56×100 and the image keeps its 30×100 size.
    assert tiles.grid == (1, 2) and tiles.ratio_id == supported_aspect_ratios(4).index((1, 2)) + 1
    assert tiles.pixels.shape == (2, 3, 56, 56)
    white = torch.tensor([(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)])
    black = torch.tensor([(0 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)])
    canvas = torch.cat(list(tiles.pixels), dim=-1)  # [3, 56, 112]
    torch.testing.assert_close(canvas[:, 0, 0], white)
    torch.testing.assert_close(canvas[:, -1, 0], black)  # padded at the bottom
    torch.testing.assert_close(canvas[:, 0, -1], black)  # and on the right


def test_collate_pads_tiles_and_images():
    transform = ImageTransform(tile_size=56, max_tiles=4)
    a = transform(torch.zeros(3, 56, 56, dtype=torch.uint8))
    b = transform(torch.zeros(3, 112, 112, dtype=torch.uint8))
    pixels, ids = collate_images([[a], [b, a]], max_tiles=4)
    assert pixels.shape == (2, 2, 4, 3, 56, 56)
    assert ids.tolist() == [[1, 0], [6, 1]]
    assert (pixels[0, 0, 1:] == 0).all() and (pixels[0, 1] == 0).all()


def test_region_mask_selects_the_patch_tokens_whose_centres_lie_in_the_scaled_box():
    # 64² → one 56-px tile (scale 0.875): box 0–32 becomes 0–28, the centres at 7 and 21 are inside.
    tiles = ImageTransform(56, max_tiles=2)(torch.zeros(3, 64, 64, dtype=torch.uint8))
    assert tiles.scale == 0.875
    mask = region_mask((0, 0, 32, 32), tiles, 14, 2)
    assert mask.shape == (2, 17) and mask.nonzero().tolist() == [[0, 1], [0, 2], [0, 5], [0, 6]]
    # 56×112 → tiles side by side (scale 1): x 60–80 holds canvas centres 63 and 77, the first two
    # patch columns of the second tile; the class tokens are never in a region.
    wide = ImageTransform(56, max_tiles=2)(torch.zeros(3, 56, 112, dtype=torch.uint8))
    assert wide.grid == (1, 2)
    assert region_mask((60, 0, 80, 14), wide, 14, 2).nonzero().tolist() == [[1, 1], [1, 2]]
    assert not region_mask((2, 2, 5, 5), tiles, 14, 2).any()  # smaller than a patch, off its centre
