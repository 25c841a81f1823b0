import pytest
import torch

from adapters.fusion import FusionConfig, build_fusion_model
from fusion_fixtures import TEXT, VISION
from text.model import Transformer


@pytest.fixture
def lm():
    torch.manual_seed(0)
    return Transformer(TEXT)


@pytest.fixture
def fused(lm):
    torch.manual_seed(1)
    return build_fusion_model(lm, VISION, FusionConfig(cross_attention_every=2))
