"""Llama 3 text-model configuration and the size presets (paper Table 3; llama3-spec §1.1–1.2).

`create_config("8B")` gives the released 8B arguments; `list_presets()` names them all. The
`tiny` preset runs on a laptop CPU in seconds and is what tests and `make demo` use.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(kw_only=True, frozen=True)
class RopeScaling:
    """Llama 3.1 RoPE frequency scaling (llama3-spec §1.4; HF `rope_type="llama3"`)."""

    factor: float = 8.0
    """Long wavelengths (> original_max_seq_len / low_freq_factor) are divided by this."""
    low_freq_factor: float = 1.0
    """Sets the long-wavelength threshold: original_max_seq_len / low_freq_factor."""
    high_freq_factor: float = 4.0
    """Sets the short-wavelength threshold: original_max_seq_len / high_freq_factor."""
    original_max_seq_len: int = 8192
    """The context the unscaled model was trained at."""


@dataclass(kw_only=True, frozen=True)
class TextConfig:
    """Architecture of a dense Llama 3 decoder."""

    dim: int
    """Model (residual stream) width."""
    n_layers: int
    """Number of Transformer blocks."""
    n_heads: int
    """Query heads; head_dim = dim / n_heads."""
    n_kv_heads: int
    """Key/value heads (GQA groups); must divide n_heads."""
    vocab_size: int
    """Rows of the embedding and output tables, special tokens included (128,256 for Llama 3)."""
    multiple_of: int = 256
    """The SwiGLU hidden width is rounded up to a multiple of this."""
    ffn_dim_multiplier: float | None = None
    """Scales the SwiGLU hidden width int(2·4·dim/3) before rounding (1.3 for 8B/70B, 1.2 for 405B)."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon (1e-5 in every released Llama 3 configuration)."""
    rope_theta: float = 500_000.0
    """RoPE base frequency."""
    rope_scaling: RopeScaling | None = None
    """Llama 3.1 frequency scaling; None for plain RoPE."""
    max_seq_len: int = 8192
    """Longest sequence the RoPE tables and KV caches are sized for."""
    tie_embeddings: bool = False
    """Share the input embedding with the output projection (Llama 3.2 1B/3B do; 8B+ do not)."""

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """SwiGLU width by the reference rule: int(2·4d/3) × multiplier, rounded up to multiple_of."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TextConfig":
        values = dict(values)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown text-model config keys: {sorted(unknown)}")
        scaling = values.get("rope_scaling")
        if isinstance(scaling, dict):
            values["rope_scaling"] = RopeScaling(**scaling)
        return cls(**values)


LLAMA3_VOCAB = 128_256
_LLAMA31_ROPE = RopeScaling()

PRESETS: dict[str, TextConfig] = {
    # ~8.9M parameters with an 8K vocabulary: trains on 2 CPU cores in minutes.
    "tiny": TextConfig(dim=256, n_layers=6, n_heads=8, n_kv_heads=4, vocab_size=8192,
                       multiple_of=256, max_seq_len=4096),
    # ~125M parameters with a 32K vocabulary: one GPU.
    "small": TextConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, vocab_size=32_768,
                        multiple_of=256, max_seq_len=8192),
    "8B": TextConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, vocab_size=LLAMA3_VOCAB,
                     multiple_of=1024, ffn_dim_multiplier=1.3, rope_scaling=_LLAMA31_ROPE,
                     max_seq_len=131_072),
    "70B": TextConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=LLAMA3_VOCAB,
                      multiple_of=4096, ffn_dim_multiplier=1.3, rope_scaling=_LLAMA31_ROPE,
                      max_seq_len=131_072),
    "405B": TextConfig(dim=16_384, n_layers=126, n_heads=128, n_kv_heads=8, vocab_size=LLAMA3_VOCAB,
                       multiple_of=4096, ffn_dim_multiplier=1.2, rope_scaling=_LLAMA31_ROPE,
                       max_seq_len=131_072),
}


def list_presets() -> list[str]:
    return list(PRESETS)


def create_config(preset: str, **overrides) -> TextConfig:
    """The named preset, with any field replaced by keyword (e.g. `vocab_size=4096`)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown text preset {preset!r}; choose from {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


__all__ = ["RopeScaling", "TextConfig", "PRESETS", "LLAMA3_VOCAB", "list_presets", "create_config"]
