"""Configuration of the video temporal aggregator (a Perceiver resampler) and its presets.

The Llama 3 paper merges each group of 32 consecutive frames into one "effective frame" with a
Perceiver resampler but publishes none of its internals (llama3-spec §4, §8.7). The `paper`
preset therefore takes the Flamingo reference shape (OpenFlamingo `PerceiverResampler`: depth 6,
64 latents, 8 heads of 64, FFN ×4) at the image encoder's output width. `tiny` runs on a laptop
CPU in milliseconds and is what tests and `make demo` use.

    config = create_config("tiny", dim=vision_output_dim)   # builders set dim from the encoder
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(kw_only=True, frozen=True)
class ResamplerConfig:
    """Shape of the Perceiver-resampler temporal aggregator."""

    dim: int
    """Width of the incoming per-frame tokens (the image encoder's output) and of the latents."""
    depth: int
    """Number of resampler layers (latent cross-attention + FFN each)."""
    n_latents: int
    """Learned latent queries; each group of frames comes out as this many tokens."""
    n_heads: int
    """Attention heads in every resampler layer."""
    dim_head: int
    """Width of one head; the attention's inner width is n_heads · dim_head."""
    ff_mult: int = 4
    """FFN hidden width = ff_mult · dim (LayerNorm → Linear → GELU → Linear, no biases)."""
    frames_per_group: int
    """Consecutive frames merged into one effective frame (32 in the paper's SFT, 16 in its
    pre-training). Also the number of learned per-frame time embeddings."""
    max_tokens: int = 0
    """Tokens per frame that get a learned spatial position embedding (builders set it from the
    image encoder: tiles × tokens per tile); 0 = none, as in the Flamingo reference, where the
    resampler sees only what the frame features themselves keep of where each token was."""
    motion_dim: int = 0
    """Channels of the time-odd motion summary added to the latent queries (`video.motion`);
    0 = none, as in the Flamingo reference. Needs `patch_grid`."""
    patch_grid: int = 0
    """Patches per side of one tile (builders set it from the image encoder): frame tokens are
    tiles × (1 + patch_grid²), class token first in each tile."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "n_latents", "n_heads", "dim_head", "ff_mult", "frames_per_group"):
            if getattr(self, name) < 1:
                raise ValueError(f"resampler {name} must be positive, got {getattr(self, name)}")
        if self.max_tokens < 0:
            raise ValueError(f"resampler max_tokens must be ≥ 0, got {self.max_tokens}")
        if self.motion_dim < 0 or self.patch_grid < 0:
            raise ValueError("resampler motion_dim and patch_grid must be ≥ 0")
        if self.motion_dim and not self.patch_grid:
            raise ValueError("resampler motion_dim needs patch_grid (patches per side of a tile)")

    @property
    def inner_dim(self) -> int:
        """Width of the attention's queries, keys and values."""
        return self.n_heads * self.dim_head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ResamplerConfig":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown resampler config keys: {sorted(unknown)}")
        return cls(**values)


PRESETS: dict[str, ResamplerConfig] = {
    # ~0.2M parameters; groups of 8 frames so tests see full and partial groups with few frames.
    "tiny": ResamplerConfig(dim=128, depth=2, n_latents=8, n_heads=2, dim_head=32, ff_mult=2,
                            frames_per_group=8),
    # OpenFlamingo reference shape at the 7680-wide multi-layer image features (llama3-spec §3.1),
    # 32 frames per group as in the paper's video SFT (64 frames → 2 effective frames). At this width
    # it has ~2.9B parameters, more than the paper's 0.6B for aggregator + video cross-attention
    # (8B model), so the unpublished original was narrower; builders may override `dim`.
    "paper": ResamplerConfig(dim=7680, depth=6, n_latents=64, n_heads=8, dim_head=64, ff_mult=4,
                             frames_per_group=32),
}


def list_presets() -> list[str]:
    return list(PRESETS)


def create_config(preset: str, **overrides) -> ResamplerConfig:
    """The named preset, with any field replaced by keyword (e.g. `dim=256`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown resampler preset {preset!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


__all__ = ["ResamplerConfig", "PRESETS", "list_presets", "create_config"]
