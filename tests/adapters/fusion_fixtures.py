"""Tiny LM / encoder configurations and inputs shared by the adapter tests."""

import torch

from text.config import create_config as text_config
from vision.config import create_config as vision_config

TEXT = text_config("tiny", vocab_size=512, dim=64, n_layers=4, n_heads=4, n_kv_heads=2,
                   multiple_of=32, max_seq_len=128)
VISION = vision_config("tiny")
V = TEXT.vocab_size  # <|image|>


def open_gates(model, value: float = 0.5) -> None:
    """Set every tanh gate (cross-attention, encoder global layers, tile embeddings) to `value`."""
    for name, p in model.named_parameters():
        if name.endswith(("gate.scale", "gate")):
            p.data.fill_(value)


def sample_batch(T: int = 14, seed: int = 0):
    """Two rows of T tokens with up to two images each: row 0 has one <|image|> at t=2 (a 1×2
    image: tiles 2–3 are padding; its second image slot is a padding image); row 1 has <|image|>
    at t=4 (a 2×2 image) and t=9 (a 1×1 image)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (2, T), generator=g)
    tokens[0, 2] = V
    tokens[1, 4] = V
    tokens[1, 9] = V
    images = torch.randn(2, 2, VISION.max_tiles, 3, VISION.tile_size, VISION.tile_size, generator=g)
    ratio_ids = torch.tensor([[2, 0], [6, 1]])
    return tokens, images, ratio_ids
