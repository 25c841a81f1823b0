"""BEST-RQ: fixed deterministic targets, span masking, loss on masked frames only, it trains."""

import pytest
import torch

from speech.bestrq import (RandomProjectionQuantizer, bestrq_loss, build_bestrq, frames_mask,
                           masked_accuracy, span_mask)
from speech.config import BestRQConfig, ConformerConfig
from speech.encoder import build_encoder

ENC = ConformerConfig(dim=32, n_layers=1, n_heads=4, ffn_dim=64, dropout=0.0)
RQ = BestRQConfig(mask_span=6, mask_prob=0.1, n_codebooks=3, codebook_size=16, seed=7)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 48, 80, generator=g), torch.tensor([48, 40, 25])


def test_targets_are_deterministic_and_seeded():
    feats, lengths = _batch()
    a, b = RandomProjectionQuantizer(80, RQ), RandomProjectionQuantizer(80, RQ)
    assert a.checksum() == b.checksum()
    ta = a(feats, lengths)
    assert ta.shape == (3, 12, 3) and ta.dtype == torch.long
    assert torch.equal(ta, b(feats, lengths)) and torch.equal(ta, a(feats, lengths))
    other = RandomProjectionQuantizer(80, BestRQConfig(**{**RQ.__dict__, "seed": 8}))
    assert other.checksum() != a.checksum()
    # codewords are unit vectors: nearest by cosine
    assert torch.allclose(a.codebooks.norm(dim=-1), torch.ones(3, 16))
    assert len(ta.unique()) > 1  # normalised features do not collapse onto one code


def test_paper_defaults():
    c = BestRQConfig()
    assert (c.mask_span, c.mask_prob, c.stack, c.codebook_dim, c.n_codebooks, c.codebook_size) == \
        (32, 0.025, 4, 16, 16, 8192)


def test_span_mask_shapes_and_padding():
    lengths = torch.tensor([100, 40, 0])
    g = torch.Generator().manual_seed(0)
    mask = span_mask(lengths, 100, span=10, prob=0.05, generator=g)
    assert not mask[1, 40:].any() and not mask[2].any()
    assert span_mask(lengths, 100, 10, 0.0).sum() == 0
    full = span_mask(lengths, 100, 10, 1.0)
    assert full[0].all() and full[1, :40].all()
    # every masked run is at least one span long unless it is cut off by the utterance's end
    m = span_mask(torch.tensor([60]), 60, span=5, prob=0.05, generator=torch.Generator().manual_seed(3))[0]
    edges = torch.diff(torch.cat([torch.tensor([0]), m.int(), torch.tensor([0])]))
    starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
    assert len(starts) > 0
    for s, e in zip(starts.tolist(), ends.tolist()):
        assert e - s >= 5 or e == 60
    assert frames_mask(torch.tensor([[0, 0, 0, 0, 0, 1]], dtype=torch.bool), 4).tolist() == [[False, True]]


def test_loss_only_on_masked_frames():
    torch.manual_seed(0)
    model = build_bestrq(build_encoder(ENC), RQ).eval()
    feats, lengths = _batch()
    targets = model.quantizer(feats, lengths)
    out = model(feats, lengths, generator=torch.Generator().manual_seed(1))
    assert 0 < out.mask.sum() < out.mask.numel()
    assert out.logits.shape == (int(out.mask.sum()), 3, 16) and torch.equal(out.targets, targets[out.mask])

    def rerun(new_targets):
        model.quantizer.forward = lambda f, l: new_targets  # noqa: E731 - stand-in quantizer
        try:
            return model(feats, lengths, generator=torch.Generator().manual_seed(1)).loss
        finally:
            del model.quantizer.forward

    changed = targets.clone()
    changed[~out.mask] = (changed[~out.mask] + 5) % RQ.codebook_size
    assert torch.equal(rerun(changed), out.loss)  # same mask, other targets on unmasked frames
    changed[out.mask] = (changed[out.mask] + 5) % RQ.codebook_size
    assert not torch.equal(rerun(changed), out.loss)
    # perfect logits → accuracy 1, and the loss is the multi-softmax mean
    onehot = torch.nn.functional.one_hot(out.targets, RQ.codebook_size).float() * 50
    assert masked_accuracy(onehot, out.targets) == 1.0 and bestrq_loss(onehot, out.targets) < 1e-6


def test_targets_ignore_autocast():
    feats, lengths = _batch()
    quantizer = RandomProjectionQuantizer(80, RQ)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = quantizer(feats, lengths)
    assert torch.equal(low, quantizer(feats, lengths))


def test_codebooks_never_train_and_loss_decreases():
    torch.manual_seed(0)
    model = build_bestrq(build_encoder(ENC), RQ)
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith("quantizer.") for n in names)
    assert {"quantizer.projection", "quantizer.codebooks"} <= set(model.state_dict())
    before = model.quantizer.checksum()
    feats, lengths = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    losses = []
    for _ in range(12):
        out = model(feats, lengths, generator=torch.Generator().manual_seed(1))  # same mask each step
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert model.quantizer.projection.grad is None and model.quantizer.codebooks.grad is None
    assert model.quantizer.checksum() == before
    assert losses[-1] < 0.7 * losses[0], losses


def test_stack_must_match_encoder():
    with pytest.raises(ValueError, match="stride"):
        build_bestrq(build_encoder(ENC), BestRQConfig(stack=2, codebook_size=8, n_codebooks=1))
