"""Image-encoder configuration and size presets (llama3-spec §3.1, §3.3).

`create_config("vit-h-14")` is the paper's encoder: ViT-H/14 (width 1280, 32 layers, 16 heads,
MLP 5120, ≈630M parameters) plus 8 gated global layers (≈850M in all), features taken at layers
[3, 7, 15, 23, 30] and concatenated with the final output (6 × 1280 = 7680 per token).
`tiny` runs on a laptop CPU in seconds and is what tests and `make demo` use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(kw_only=True, frozen=True)
class VisionConfig:
    """Architecture of the tiled ViT image encoder (Llama 3.2 Vision layout)."""

    width: int
    """Residual-stream width of every encoder layer."""
    n_layers: int
    """Local (ungated) Transformer layers, run over all tiles of an image as one sequence."""
    n_heads: int
    """Attention heads; head_dim = width / n_heads."""
    mlp_dim: int
    """Hidden width of the GELU MLP."""
    n_global_layers: int = 8
    """Gated global layers after the local ones (tanh gates on attention and MLP, start at 0)."""
    intermediate_layers: tuple[int, ...] = ()
    """0-based local-layer indices whose *input* hidden state is exported as a feature."""
    patch_size: int = 14
    """Side of a square patch in pixels."""
    tile_size: int = 448
    """Side of a square tile in pixels (336 in the paper's pre-training, 448/560 released)."""
    max_tiles: int = 4
    """Most tiles per image; canvases are every rows × cols grid with rows·cols ≤ max_tiles."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""

    def __post_init__(self) -> None:
        if self.width % self.n_heads:
            raise ValueError(f"width {self.width} is not divisible by n_heads {self.n_heads}")
        if self.tile_size % self.patch_size:
            raise ValueError(f"tile_size {self.tile_size} is not a multiple of patch_size {self.patch_size}")
        bad = [i for i in self.intermediate_layers if not 0 <= i < self.n_layers]
        if bad:
            raise ValueError(f"intermediate layer indices {bad} outside 0..{self.n_layers - 1}")

    @property
    def patches_per_tile(self) -> int:
        return (self.tile_size // self.patch_size) ** 2

    @property
    def tokens_per_tile(self) -> int:
        """Patches plus the class token."""
        return self.patches_per_tile + 1

    @property
    def output_dim(self) -> int:
        """Features per token: the final output concatenated with each intermediate state."""
        return self.width * (1 + len(self.intermediate_layers))

    @property
    def aspect_ratios(self) -> list[tuple[int, int]]:
        """Supported (rows, cols) tile grids; aspect-ratio id = index + 1 (0 marks a padding image)."""
        n = self.max_tiles
        return [(r, c) for r in range(1, n + 1) for c in range(1, n + 1) if r * c <= n]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VisionConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown vision config keys: {sorted(unknown)}")
        values = dict(values)
        if "intermediate_layers" in values:
            values["intermediate_layers"] = tuple(values["intermediate_layers"])
        return cls(**values)


PRESETS: dict[str, VisionConfig] = {
    # ~0.2M parameters, 56-px tiles of 4×4 patches: a forward pass over 4 tiles takes milliseconds.
    "tiny": VisionConfig(width=64, n_layers=4, n_heads=4, mlp_dim=256, n_global_layers=2,
                         intermediate_layers=(1, 3), patch_size=14, tile_size=56, max_tiles=4),
    # ViT-S/14-sized: one GPU.
    "small": VisionConfig(width=384, n_layers=12, n_heads=6, mlp_dim=1536, n_global_layers=4,
                          intermediate_layers=(3, 7, 10), tile_size=224),
    "vit-l-14": VisionConfig(width=1024, n_layers=24, n_heads=16, mlp_dim=4096, n_global_layers=8,
                             intermediate_layers=(3, 7, 15, 23), tile_size=336),
    # The paper / Llama 3.2 Vision encoder (llama3-spec §3.1).
    "vit-h-14": VisionConfig(width=1280, n_layers=32, n_heads=16, mlp_dim=5120, n_global_layers=8,
                             intermediate_layers=(3, 7, 15, 23, 30), tile_size=448),
}


def list_presets() -> list[str]:
    return list(PRESETS)


def create_config(preset: str, **overrides) -> VisionConfig:
    """The named preset, with any field replaced by keyword (e.g. `tile_size=560`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown vision preset {preset!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


__all__ = ["VisionConfig", "PRESETS", "list_presets", "create_config"]
