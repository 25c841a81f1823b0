"""Temporal aggregator invariants on a tiny Perceiver resampler (groups of 8 frames)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from video.config import PRESETS, ResamplerConfig, create_config, list_presets
from video.resampler import TemporalAggregator, build_aggregator

DIM, TOKENS = 32, 5


@pytest.fixture
def aggregator() -> TemporalAggregator:
    torch.manual_seed(0)
    config = create_config("tiny", dim=DIM, dim_head=16)
    assert config.frames_per_group == 8
    return build_aggregator(config).eval()


def _frames(batch: int, n_frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, n_frames, TOKENS, DIM, generator=torch.Generator().manual_seed(seed))


# -- config -----------------------------------------------------------------------------------

def test_presets_listed_and_paper_shape():
    assert list_presets() == ["tiny", "paper"]
    paper = PRESETS["paper"]
    assert (paper.depth, paper.n_latents, paper.dim_head, paper.n_heads, paper.ff_mult,
            paper.frames_per_group) == (6, 64, 64, 8, 4, 32)


def test_config_round_trip_and_unknown_keys():
    config = create_config("tiny", dim=64)
    assert ResamplerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        ResamplerConfig.from_dict({**config.to_dict(), "n_queries": 4})
    with pytest.raises(ValueError):
        create_config("huge")
    with pytest.raises(ValueError):
        create_config("tiny", depth=0)


@pytest.mark.parametrize("preset", list_presets())
def test_builds_on_meta_with_expected_parameter_count(preset):
    config = PRESETS[preset]
    with torch.device("meta"):
        model = build_aggregator(config)
    d, inner, hidden = config.dim, config.inner_dim, config.ff_mult * config.dim
    per_layer = 4 * d * inner + 2 * d * hidden + 3 * 2 * d  # q, kv, out; FFN; three LayerNorms
    expected = config.depth * per_layer + 2 * 2 * d + (config.n_latents + config.frames_per_group) * d  # 2 norms
    assert sum(p.numel() for p in model.parameters()) == expected


# -- shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_frames", [1, 7, 16, 33])
def test_output_shape(aggregator, n_frames):
    out = aggregator(_frames(2, n_frames))
    assert out.shape == (2, math.ceil(n_frames / 8), 8, DIM)
    assert torch.isfinite(out).all()


def test_group_mask():
    agg = build_aggregator(create_config("tiny", dim=DIM))
    mask = torch.zeros(2, 17, dtype=torch.bool)
    mask[0, :17] = True
    mask[1, :5] = True
    assert agg.group_mask(mask).tolist() == [[True, True, True], [True, False, False]]


# -- gradients --------------------------------------------------------------------------------

def test_every_parameter_gets_a_gradient(aggregator):
    aggregator.train()
    aggregator(_frames(2, 11)).square().mean().backward()
    for name, param in aggregator.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    time_grad = aggregator.resampler.time_embed.grad
    assert (time_grad.abs().sum(dim=1) > 0).all()  # 11 frames: positions 0–7 (group 1) all used
    assert aggregator.resampler.latents.grad.abs().sum() > 0


# -- masking and partial groups ---------------------------------------------------------------

def test_padded_frames_do_not_influence_output(aggregator):
    frames = _frames(2, 16)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 5:] = False  # sample 0 has 5 real frames, the rest is padding
    mask[1, 12:] = False
    out = aggregator(frames, mask)
    garbage = frames.clone()
    garbage[~mask] = 1e3 * torch.randn_like(garbage[~mask])
    assert torch.allclose(aggregator(garbage, mask), out, atol=1e-6, rtol=0)
    # ...whereas the same change on real frames does.
    garbage[0, 0] += torch.randn_like(garbage[0, 0])  # a constant shift would vanish in LayerNorm
    assert not torch.allclose(aggregator(garbage, mask)[0, 0], out[0, 0], atol=1e-4)


def test_last_partial_group_equals_its_real_frames_alone(aggregator):
    frames = _frames(1, 19)  # groups of 8, 8 and 3
    out = aggregator(frames)
    alone = aggregator(frames[:, 16:])
    assert alone.shape == (1, 1, 8, DIM)
    assert torch.allclose(out[:, 2], alone[:, 0], atol=1e-6, rtol=0)
    assert torch.allclose(out[:, :2], aggregator(frames[:, :16]), atol=1e-6, rtol=0)


def test_groups_are_independent(aggregator):
    frames = _frames(1, 16)
    out = aggregator(frames)
    changed = frames.clone()
    changed[:, 8:] = torch.randn_like(changed[:, 8:])
    new = aggregator(changed)
    assert torch.allclose(new[:, 0], out[:, 0], atol=1e-6, rtol=0)
    assert not torch.allclose(new[:, 1], out[:, 1], atol=1e-4)


# -- time embeddings carry frame order --------------------------------------------------------

def test_frame_order_matters_only_through_time_embeddings(aggregator):
    frames = _frames(2, 8)
    permuted = frames[:, torch.randperm(8, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        assert not torch.allclose(aggregator(permuted), aggregator(frames), atol=1e-4)
        aggregator.resampler.time_embed.zero_()
        # Attention over keys is permutation-invariant: without time embeddings order is lost.
        assert torch.allclose(aggregator(permuted), aggregator(frames), atol=1e-5)


def test_token_places_matter_only_through_spatial_embeddings():
    torch.manual_seed(0)
    spatial = build_aggregator(create_config("tiny", dim=DIM, dim_head=16, max_tokens=TOKENS)).eval()
    frames = _frames(2, 8)
    moved = frames[:, :, torch.randperm(TOKENS, generator=torch.Generator().manual_seed(4))]
    with torch.no_grad():
        assert not torch.allclose(spatial(moved), spatial(frames), atol=1e-4)
        spatial.resampler.token_embed.zero_()
        # Without them, shuffling every frame's tokens alike changes nothing: a token's place is lost.
        assert torch.allclose(spatial(moved), spatial(frames), atol=1e-5)
    with pytest.raises(ValueError, match="spatial embeddings"):
        spatial(_frames(1, 2).repeat(1, 1, 2, 1))


def test_bf16_autocast_runs():
    agg = build_aggregator(create_config("tiny", dim=DIM))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = agg(_frames(1, 9))
    assert out.shape == (1, 2, 8, DIM) and torch.isfinite(out.float()).all()
