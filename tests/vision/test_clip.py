import math

import pytest
import torch

from vision.clip import ClipModel, Regions, TextTower, region_phrase_loss, retrieval_recall
from vision.config import create_config
from vision.encoder import build_encoder


def test_clip_loss_trains_everything_including_temperature():
    torch.manual_seed(0)
    model = ClipModel(build_encoder(create_config("tiny")),
                      TextTower(vocab_size=64, embed_dim=32, width=32, n_layers=1, n_heads=2), 32)
    pixels = torch.randn(3, 4, 3, 56, 56)
    ids = torch.tensor([1, 6, 2])
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [3, 4, 5, 6]])
    loss = model.loss(pixels, ids, tokens)
    assert torch.isfinite(loss) and loss.item() > 0
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)
    loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None and "gate" not in n and "tile_embedding" not in n
               and "global_layers" not in n]
    # With gates at zero the gated parts get no gradient yet; everything else does.
    assert no_grad == []


def test_text_tower_pools_last_real_token():
    torch.manual_seed(0)
    tower = TextTower(vocab_size=16, embed_dim=8, width=16, n_layers=1, n_heads=2)
    a = tower(torch.tensor([[3, 4, 0, 0]]))
    b = tower(torch.tensor([[3, 4, 0, 0, 0, 0]]))
    torch.testing.assert_close(a, b)


def test_retrieval_recall_hand_case():
    images = torch.eye(3)
    # Caption 0 → image 0 (exact), caption 1 → image 1 but closest to image 2, caption 2 → image 2.
    texts = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.9], [0, 0, 1.0]])
    r = retrieval_recall(images, texts, ks=(1, 2))
    # i2t R@1: image0 → text0 ✓; image1 → text1 ✓ (0.5 is its best); image2 → text2 (1.0 > 0.9) ✓.
    assert r["i2t_R@1"] == 1.0
    # t2i R@1: text1's best image is 2 ✗; others ✓.
    assert r["t2i_R@1"] == pytest.approx(2 / 3)
    assert r["t2i_R@2"] == 1.0
    # Several captions per image.
    texts = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.9, 0, 0], [0, 0.8, 0]])
    r = retrieval_recall(images[:2], texts, torch.tensor([0, 1, 0, 1]), ks=(1,))
    assert r["i2t_R@1"] == 1.0 and r["t2i_R@1"] == 1.0


def test_a_few_steps_fit_a_tiny_batch():
    torch.manual_seed(0)
    model = ClipModel(build_encoder(create_config("tiny")),
                      TextTower(vocab_size=32, embed_dim=16, width=32, n_layers=1, n_heads=2), 16)
    pixels = torch.randn(4, 4, 3, 56, 56)
    ids = torch.tensor([1, 2, 5, 6])
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = model.loss(pixels, ids, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        r = retrieval_recall(model.encode_image(pixels, ids), model.encode_text(tokens))
    assert r["i2t_R@1"] == 1.0


def test_spec_rebuilds_the_same_model():
    from train.models import build_from_spec

    torch.manual_seed(0)
    model = ClipModel(build_encoder(create_config("tiny", max_tiles=2)),
                      TextTower(vocab_size=40, embed_dim=16, width=32, n_layers=1, n_heads=2, pad_id=3), 16)
    spec = model.spec()
    assert spec["arch"] == "clip" and spec["vision"]["max_tiles"] == 2 and spec["text"]["pad_id"] == 3
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    tokens = torch.tensor([[5, 6, 3], [7, 3, 3]])
    pixels = torch.randn(2, 2, 3, 56, 56)
    ratio_ids = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(rebuilt(pixels, ratio_ids, tokens)["clip"], model(pixels, ratio_ids, tokens)["clip"])


def test_region_phrase_loss_treats_every_region_with_the_phrase_as_a_positive():
    regions = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    phrase_ids = torch.tensor([0, 0, 1])
    scale = torch.tensor(10.0)
    # By hand: row 0 logits (10, 10, 0), target (½, ½, 0) → −log(e¹⁰ / (2e¹⁰ + 1)) ≈ log 2.
    loss = region_phrase_loss(regions, regions, phrase_ids, scale)
    logits = 10 * regions @ regions.T
    by_hand = -torch.log_softmax(logits, 1)[[0, 0, 1, 1, 2], [0, 1, 0, 1, 2]] * torch.tensor([.5, .5, .5, .5, 1])
    assert torch.allclose(loss, by_hand.sum() / 3, atol=1e-6)
    swapped = region_phrase_loss(regions, regions.flip(0), phrase_ids, scale)
    assert swapped > loss + 5


def test_forward_adds_the_region_loss_from_the_same_encoder_pass():
    torch.manual_seed(0)
    model = ClipModel(build_encoder(create_config("tiny", max_tiles=1)),
                      TextTower(vocab_size=32, embed_dim=16, width=32, n_layers=1), 16)
    pixels, ids = torch.randn(2, 1, 3, 56, 56), torch.ones(2, dtype=torch.long)
    tokens = torch.randint(1, 32, (2, 5))
    mask = torch.zeros(3, 1, 17, dtype=torch.bool)
    mask[0, 0, 1:5] = mask[1, 0, 5:9] = mask[2, 0, 1:17] = True
    regions = Regions(torch.tensor([0, 0, 1]), mask, torch.randint(1, 32, (3, 4)), torch.tensor([0, 1, 2]))
    losses = model(pixels, ids, tokens, regions)
    assert set(losses) == {"clip", "region"} and torch.allclose(losses["clip"], model.loss(pixels, ids, tokens))
    assert set(model(pixels, ids, tokens)) == {"clip"}
    losses["region"].backward()
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0 and model.text.token_embedding.weight.grad.abs().sum() > 0
