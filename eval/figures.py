"""Figures for evaluation reports: a grid of images, each titled with its text lines.

    image_grid(images, [["gen: a cat", "ref: a small cat"], …], out / "grid.png", cols=4)
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from PIL import Image


def image_grid(images: Sequence[Image.Image], titles: Sequence[Sequence[str]], path: Path, *, cols: int = 4,
               width: int = 28) -> Path:
    """Save images in a grid, each with its title lines wrapped to `width` characters, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on the training machines
    import matplotlib.pyplot as plt

    if len(images) != len(titles) or not images:
        raise ValueError(f"image_grid needs one title per image; got {len(images)} images, {len(titles)} titles")
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, lines in zip(axes.flat, images, titles):
        ax.imshow(image)
        ax.set_title("\n".join(textwrap.fill(line, width) for line in lines), fontsize=7, loc="left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["image_grid"]
