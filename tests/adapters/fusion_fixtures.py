"""Tiny LM / encoder configurations and inputs shared by the adapter tests."""

import torch

from adapters.fusion import FusionConfig, build_fusion_model
from text.config import create_config as text_config
from text.model import Transformer
from vision.config import create_config as vision_config

TEXT = text_config("tiny", vocab_size=512, dim=64, n_layers=4, n_heads=4, n_kv_heads=2,
                   multiple_of=32, max_seq_len=128)
VISION = vision_config("tiny")
V = TEXT.vocab_size  # <|image|>


def open_gates(model, value: float = 0.5) -> None:
    for name, p in model.named_parameters():
        if name.endswith(("gate.scale", "gate.gate", "_gate.gate")) or name.endswith("gate"):
            p.data.fill_(value)


def sample_batch(T: int = 14, seed: int = 0):
    """Two rows: row 0 has one image at t=2; row 1 images at t=4 and t=9 (image 1 is 2×2 tiles,
    image 0 of row 0 is 1×2 with two padding tiles)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (2, T), generator=g)
    tokens[0, 2] = V
    tokens[1, 4] = V
    tokens[1, 9] = V
    images = torch.randn(2, 2, VISION.max_tiles, 3, VISION.tile_size, VISION.tile_size, generator=g)
    ratio_ids = torch.tensor([[2, 0], [6, 1]])
    return tokens, images, ratio_ids
