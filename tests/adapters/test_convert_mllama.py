"""herd's fused model maps one-to-one onto transformers' Mllama, and gives the same logits."""

import pytest
import torch

from adapters.convert_mllama import from_mllama_state_dict, mllama_config, to_mllama_state_dict
from fusion_fixtures import V, open_gates

transformers = pytest.importorskip("transformers")


@pytest.fixture
def pair(fused):
    torch.manual_seed(3)
    open_gates(fused, 0.4)
    with torch.no_grad():  # give every parameter a non-trivial value
        for p in fused.parameters():
            p.add_(0.02 * torch.randn_like(p))
    hf = transformers.MllamaForConditionalGeneration(
        transformers.MllamaConfig(**mllama_config(fused))).eval()
    return fused.eval(), hf


def test_state_dicts_map_one_to_one(pair):
    fused, hf = pair
    hf_state = to_mllama_state_dict(fused.state_dict(), fused)
    assert set(hf_state) == set(hf.state_dict())
    for k, t in hf_state.items():
        assert t.shape == hf.state_dict()[k].shape, k
    hf.load_state_dict(hf_state, strict=True)
    back = from_mllama_state_dict(hf.state_dict(), fused)
    assert set(back) == set(fused.state_dict())
    assert all(torch.equal(back[k], v) for k, v in fused.state_dict().items())


def test_logits_match_mllama(pair):
    fused, hf = pair
    hf.load_state_dict(to_mllama_state_dict(fused.state_dict(), fused))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (2, 10), generator=g)
    with torch.no_grad():
        # Text only: cross-attention skipped by both.
        torch.testing.assert_close(hf(input_ids=tokens).logits, fused(tokens), rtol=1e-4, atol=1e-4)
        # With an image (the text side: HF is fed herd's projected image tokens, since the two
        # encoders differ in how they pad; every text row sees the image, see convert_mllama).
        tokens[:, 0] = V
        tokens[1, 6] = V + 1  # a second learnable row (<|video|>), just to read its embedding
        images = torch.randn(2, 1, 4, 3, 56, 56, generator=g)
        ratio_ids = torch.tensor([[6], [2]])
        image_tokens = fused.vision_projection(fused.vision_encoder(images, ratio_ids))
        tile_valid = fused.vision_encoder.tile_mask(ratio_ids)  # [B, 1, tiles]
        cross_mask = tile_valid[:, None].expand(2, 10, 1, 4).long()
        hf_logits = hf(input_ids=tokens, cross_attention_states=image_tokens,
                       cross_attention_mask=cross_mask).logits
        torch.testing.assert_close(hf_logits, fused(tokens, images=images, ratio_ids=ratio_ids),
                                   rtol=1e-4, atol=1e-4)


def _herd_style_encoder_mask(aspect_ratio_mask, num_patches, target_length, dtype):
    """HF's encoder mask rebuilt with herd's rule: no query attends padding tokens or padding
    tiles (HF only blocks padding→padding pairs); padding queries see everything."""
    valid = aspect_ratio_mask.bool()[:, :, None].repeat(1, 1, target_length)
    valid[:, :, num_patches:] = False
    valid = valid.flatten(1)  # [BN, tiles·target_length]
    allowed = valid[:, None, :] | ~valid[:, :, None]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def test_encoder_matches_mllama_up_to_its_padding_rule(pair, monkeypatch):
    """With HF's encoder mask replaced by herd's padding rule, the encoders agree — so the only
    difference is that rule, not the layout or the weights.

    transformers 5.x collects each layer's *output* as `hidden_states[i]`, where the reference
    (llama-models, and transformers 4.x) takes the state *entering* layer i; the HF model here is
    configured with the indices shifted by one to compare like with like.
    """
    from transformers.models.mllama import modeling_mllama

    fused, _ = pair
    config = mllama_config(fused)
    config["vision_config"]["intermediate_layers_indices"] = [
        i - 1 for i in config["vision_config"]["intermediate_layers_indices"]]
    hf = transformers.MllamaForConditionalGeneration(transformers.MllamaConfig(**config)).eval()
    hf.load_state_dict(to_mllama_state_dict(fused.state_dict(), fused))
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 2, 4, 3, 56, 56, generator=g)
    ratio_ids = torch.tensor([[6, 2], [3, 0]])
    tile_valid = fused.vision_encoder.tile_mask(ratio_ids)
    with torch.no_grad():
        ours = fused.vision_encoder(images, ratio_ids)
        theirs = hf.model.vision_model(images, ratio_ids, tile_valid.long()).last_hidden_state
        assert not torch.allclose(theirs[tile_valid], ours[tile_valid], atol=1e-4)
        monkeypatch.setattr(modeling_mllama, "_prepare_aspect_ratio_attention_mask",
                            _herd_style_encoder_mask)
        theirs = hf.model.vision_model(images, ratio_ids, tile_valid.long()).last_hidden_state
    torch.testing.assert_close(theirs[tile_valid], ours[tile_valid], rtol=1e-4, atol=1e-4)
