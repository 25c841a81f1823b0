"""Conformer encoder: presets, 40 ms frames, padding invariance, gradients, torchaudio pieces."""

import dataclasses

import pytest
import torch
from torchaudio.models.conformer import _ConvolutionModule, _FeedForwardModule

from speech.config import ConformerConfig, SpeechConfig, create_config, list_presets
from speech.encoder import build_encoder, stack_frames
from speech.features import LogMelFrontEnd

SMALL = ConformerConfig(dim=32, n_layers=2, n_heads=4, ffn_dim=64, conv_kernel=7, dropout=0.0)


def test_presets_listed_and_1b_matches_the_paper():
    assert list_presets()[0] == "tiny" and "1B" in list_presets()
    enc = create_config("1B").encoder
    assert (enc.n_layers, enc.dim, enc.ffn_dim, enc.n_heads, enc.conv_kernel) == (24, 1536, 4096, 24, 7)
    with torch.device("meta"):
        n = sum(p.numel() for p in build_encoder(enc).parameters())
    assert 0.95e9 < n < 1.05e9  # llama3-spec §5.2: ≈ 41.7M per layer × 24


@pytest.mark.parametrize("preset", list_presets())
def test_config_roundtrip_and_unknown_keys(preset):
    cfg = create_config(preset)
    assert SpeechConfig.from_dict(cfg.to_dict()) == cfg
    bad = cfg.to_dict()
    bad["encoder"]["colour"] = 1
    with pytest.raises(ValueError, match="colour"):
        SpeechConfig.from_dict(bad)


def test_tiny_preset_runs_and_gives_40ms_frames():
    cfg = create_config("tiny")
    assert cfg.frame_ms == 40.0 and cfg.token_ms == 80.0
    encoder = build_encoder(cfg.encoder).eval()
    frontend = LogMelFrontEnd(cfg.features)
    for seconds in (1.0, 2.4):
        feats, lengths = frontend([torch.randn(int(16_000 * seconds))])
        frames, frame_lengths = encoder(feats, lengths)
        assert frames.shape == (1, frame_lengths.item(), cfg.encoder.dim)
        # 100 input frames per second, 4 per encoder frame: one frame per 40 ms (+1 centred edge)
        assert frame_lengths.item() == -(-lengths.item() // 4)
        assert frame_lengths.item() == round(seconds / 0.040) + 1


def test_stacking_concatenates_consecutive_frames():
    x = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 6, 3)
    stacked, lengths = stack_frames(x, torch.tensor([6, 5]), 4)
    assert stacked.shape == (2, 2, 12) and lengths.tolist() == [2, 2]
    assert torch.equal(stacked[0, 0], x[0, :4].flatten())
    assert torch.equal(stacked[1, 1], torch.cat([x[1, 4].flatten(), torch.zeros(9)]))


@pytest.mark.parametrize("conv_norm, training", [("layer", False), ("layer", True), ("batch", False)])
def test_padded_batch_equals_batch_size_one(conv_norm, training):
    # BatchNorm mixes the batch in training mode by design; the per-frame LayerNorm never does
    torch.manual_seed(0)
    encoder = build_encoder(dataclasses.replace(SMALL, conv_norm=conv_norm)).train(training)
    lengths = torch.tensor([37, 80, 53, 1])
    feats = torch.randn(4, 80, 80) * 5  # padding holds garbage, not zeros
    out, out_lengths = encoder(feats, lengths)
    assert out_lengths.tolist() == [10, 20, 14, 1]
    for i, n in enumerate(lengths.tolist()):
        alone, _ = encoder(feats[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(out[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-5)
        assert (out[i, out_lengths[i]:] == 0).all()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    encoder = build_encoder(dataclasses.replace(SMALL, dropout=0.1)).train()
    out, lengths = encoder(torch.randn(2, 30, 80), torch.tensor([30, 17]))
    out.square().mean().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_layers_reuse_torchaudio_building_blocks():
    layer = build_encoder(SMALL).layers[0]
    assert isinstance(layer.ffn1, _FeedForwardModule) and isinstance(layer.ffn2, _FeedForwardModule)
    assert isinstance(layer.conv, _ConvolutionModule)
    assert layer.conv.sequential[2].kernel_size == (7,)


def test_bf16_autocast_runs():
    encoder = build_encoder(SMALL).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = encoder(torch.randn(2, 40, 80), torch.tensor([40, 21]))
    assert torch.isfinite(out.float()).all()
