import pytest
import torch

from vision.config import VisionConfig, create_config, list_presets
from vision.encoder import build_encoder, parameter_counts


@pytest.mark.parametrize("preset", list_presets())
def test_presets_build_on_meta(preset):
    config = create_config(preset)
    with torch.device("meta"):
        encoder = build_encoder(config)
    assert config.output_dim == config.width * (1 + len(config.intermediate_layers))
    assert parameter_counts(encoder)["total"] == sum(p.numel() for p in encoder.parameters())


def test_vit_h_14_is_the_paper_encoder():
    config = create_config("vit-h-14")
    assert (config.width, config.n_layers, config.n_heads, config.mlp_dim) == (1280, 32, 16, 5120)
    assert config.n_global_layers == 8 and config.intermediate_layers == (3, 7, 15, 23, 30)
    assert config.output_dim == 7680
    with torch.device("meta"):
        counts = parameter_counts(build_encoder(config))
    print(f"vit-h-14: local {counts['local'] / 1e6:.1f}M, total with gated layers "
          f"{counts['total'] / 1e6:.1f}M")
    assert counts["local"] == pytest.approx(630e6, rel=0.01)  # paper: 630M
    assert counts["total"] == pytest.approx(850e6, rel=0.03)  # paper: 850M


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ValueError, match="unknown"):
        VisionConfig.from_dict({**create_config("tiny").to_dict(), "depth": 3})
    with pytest.raises(ValueError):
        create_config("tiny", tile_size=50)
    with pytest.raises(ValueError):
        create_config("nope")
    assert VisionConfig.from_dict(create_config("tiny").to_dict()) == create_config("tiny")


def test_aspect_ratios_match_the_reference_list():
    assert create_config("vit-h-14").aspect_ratios == [
        (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (3, 1), (4, 1)]
