"""Speech-path configuration and size presets (llama3-spec §5.2–5.5).

One `SpeechConfig` per preset bundles the four parts of the speech path: the log-mel front end,
the Conformer encoder, the BEST-RQ pretraining targets and the speech adapter into the LM.

    cfg = create_config("tiny")            # runs on a laptop CPU in seconds
    cfg = create_config("1B")              # the paper's encoder: 24 × 1536, FFN 4096, 24 heads
    list_presets()                          # ['tiny', 'small', 'base', '1B', 'micro']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True, frozen=True)
class FeatureConfig:
    """Log-mel front end: any audio → 16 kHz mono → log-mel → per-utterance normalisation."""

    sample_rate: int = 16_000
    """Every waveform is resampled to this rate first."""
    n_mels: int = 80
    """Mel bins (80 in Llama 3)."""
    win_ms: float = 25.0
    """Analysis window length in milliseconds (400 samples at 16 kHz)."""
    hop_ms: float = 10.0
    """Hop between frames in milliseconds (160 samples at 16 kHz): 100 frames per second."""
    log_floor: float = 1e-6
    """Added to mel power before the log so that silence stays finite."""

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)


@dataclass(kw_only=True, frozen=True)
class ConformerConfig:
    """Conformer encoder: stride-`stack` frame stacking + linear, then `n_layers` Conformer layers."""

    dim: int
    """Latent width of every Conformer layer (1536 in Llama 3)."""
    n_layers: int
    """Number of Conformer layers (24 in Llama 3)."""
    n_heads: int
    """Attention heads; head_dim = dim / n_heads must be even for rotary embeddings."""
    ffn_dim: int
    """Hidden width of each of the two macaron feed-forward modules (4096 in Llama 3)."""
    conv_kernel: int = 7
    """Depthwise convolution kernel (odd; 7 in Llama 3)."""
    conv_norm: Literal["layer", "batch"] = "layer"
    """Norm after the depthwise conv: per-frame LayerNorm (padding- and batch-independent in
    training too) or BatchNorm as in Gulati et al. (padding-independent only in eval mode)."""
    n_mels: int = 80
    """Input feature width."""
    stack: int = 4
    """Consecutive 10 ms frames stacked into one encoder frame: 4 → 40 ms frames."""
    rope_theta: float = 10_000.0
    """Rotary base frequency of the self-attention."""
    dropout: float = 0.1
    """Dropout in the feed-forward, attention and convolution modules."""

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} / n_heads {self.n_heads} must give an even head_dim")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel {self.conv_kernel} must be odd ('same' padding)")
        if self.conv_norm not in ("layer", "batch"):
            raise ValueError(f"conv_norm must be 'layer' or 'batch', not {self.conv_norm!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


@dataclass(kw_only=True, frozen=True)
class BestRQConfig:
    """BEST-RQ masked prediction (llama3-spec §5.5; Chiu et al. 2022)."""

    mask_span: int = 32
    """Length of one masked span in 10 ms input frames (32 = 320 ms in Llama 3)."""
    mask_prob: float = 0.025
    """Probability that a valid input frame starts a masked span (2.5% in Llama 3)."""
    noise_std: float = 0.1
    """Masked input frames are replaced by N(0, noise_std²) noise."""
    stack: int = 4
    """Input frames stacked into one target vector (matches the encoder stride)."""
    codebook_dim: int = 16
    """Width of the random projection and of each codeword."""
    n_codebooks: int = 16
    """Independent (projection, codebook) pairs, one softmax each."""
    codebook_size: int = 8192
    """Codewords per codebook."""
    seed: int = 0
    """Seed of the fixed projections and codebooks: equal seeds give bit-identical targets."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob {self.mask_prob} is not a probability")
        if self.mask_span < 1:
            raise ValueError(f"mask_span {self.mask_span} must be ≥ 1")


@dataclass(kw_only=True, frozen=True)
class SpeechAdapterConfig:
    """Speech adapter (llama3-spec §5.3): conv (k3, s2) → one rotary Transformer layer → linear."""

    dim: int
    """Latent width of the conv output and the Transformer layer (3072 in Llama 3)."""
    n_heads: int
    """Attention heads of the Transformer layer."""
    ffn_dim: int
    """Feed-forward hidden width of the Transformer layer (4096 in Llama 3)."""
    kernel: int = 3
    """Conv kernel over encoder frames."""
    stride: int = 2
    """Conv stride: 2 turns 40 ms encoder frames into 80 ms LM tokens."""
    rope_theta: float = 10_000.0
    """Rotary base frequency of the self-attention."""
    dropout: float = 0.0
    """Dropout in the attention and feed-forward modules."""

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} / n_heads {self.n_heads} must give an even head_dim")
        if self.kernel % 2 == 0:
            raise ValueError(f"adapter kernel {self.kernel} must be odd (ceil(T/stride) outputs)")


@dataclass(kw_only=True, frozen=True)
class SpeechConfig:
    """Everything that shapes the speech path of one preset."""

    encoder: ConformerConfig
    """The Conformer encoder."""
    adapter: SpeechAdapterConfig
    """The speech adapter (its output width is the LM's, given when it is built)."""
    features: FeatureConfig = FeatureConfig()
    """The log-mel front end."""
    bestrq: BestRQConfig = BestRQConfig()
    """BEST-RQ pretraining targets and masking."""

    @property
    def frame_ms(self) -> float:
        """Duration of one encoder output frame (40 ms)."""
        return self.features.hop_ms * self.encoder.stack

    @property
    def token_ms(self) -> float:
        """Duration of one adapter output token (80 ms)."""
        return self.frame_ms * self.adapter.stride

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SpeechConfig":
        """Inverse of `to_dict`; unknown keys at any level are errors."""
        parts = {"encoder": ConformerConfig, "adapter": SpeechAdapterConfig,
                 "features": FeatureConfig, "bestrq": BestRQConfig}
        _check_keys("speech", values, parts)
        kwargs = {}
        for name, part in parts.items():
            if name in values:
                sub = values[name]
                _check_keys(f"speech.{name}", sub, {f.name for f in dataclasses.fields(part)})
                kwargs[name] = part(**sub)
        return cls(**kwargs)


def _check_keys(where: str, values: dict, allowed) -> None:
    unknown = set(values) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {where} config keys: {sorted(unknown)}")


PRESETS: dict[str, SpeechConfig] = {
    # ~2.9M-parameter encoder: BEST-RQ and the adapter stage run on 2 CPU cores in minutes.
    # Shorter spans and fewer, smaller codebooks keep the masked-prediction head small.
    "tiny": SpeechConfig(
        encoder=ConformerConfig(dim=144, n_layers=6, n_heads=4, ffn_dim=576, conv_kernel=7),
        adapter=SpeechAdapterConfig(dim=256, n_heads=4, ffn_dim=512),
        bestrq=BestRQConfig(mask_span=10, mask_prob=0.04, n_codebooks=4, codebook_size=1024),
    ),
    # ~20M: one GPU.
    "small": SpeechConfig(
        encoder=ConformerConfig(dim=256, n_layers=12, n_heads=4, ffn_dim=1024, conv_kernel=7),
        adapter=SpeechAdapterConfig(dim=512, n_heads=8, ffn_dim=1024),
        bestrq=BestRQConfig(mask_span=16, n_codebooks=8, codebook_size=4096),
    ),
    # ~100M: a BEST-RQ-paper-sized encoder.
    "base": SpeechConfig(
        encoder=ConformerConfig(dim=512, n_layers=16, n_heads=8, ffn_dim=2048, conv_kernel=7),
        adapter=SpeechAdapterConfig(dim=1024, n_heads=16, ffn_dim=2048),
    ),
    # Llama 3 (llama3-spec §5.2–5.3): ~1.0B encoder, ~90M adapter into a 4096-wide LM.
    "1B": SpeechConfig(
        encoder=ConformerConfig(dim=1536, n_layers=24, n_heads=24, ffn_dim=4096, conv_kernel=7),
        adapter=SpeechAdapterConfig(dim=3072, n_heads=24, ffn_dim=4096),
    ),
    # ~30K: stage smoke tests only (milliseconds per step).
    "micro": SpeechConfig(
        encoder=ConformerConfig(dim=32, n_layers=1, n_heads=4, ffn_dim=64, conv_kernel=3),
        adapter=SpeechAdapterConfig(dim=32, n_heads=4, ffn_dim=64),
        bestrq=BestRQConfig(mask_span=4, mask_prob=0.1, n_codebooks=2, codebook_size=64),
    ),
}


def list_presets() -> list[str]:
    return list(PRESETS)


def create_config(preset: str) -> SpeechConfig:
    """The named speech preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown speech preset {preset!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[preset]


__all__ = ["FeatureConfig", "ConformerConfig", "BestRQConfig", "SpeechAdapterConfig", "SpeechConfig",
           "PRESETS", "list_presets", "create_config"]
