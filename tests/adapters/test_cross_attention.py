import torch

from adapters.cross_attention import CrossAttentionBlock, ImageAttention
from adapters.gate import TanhGate


def _inputs(block, B=2, T=5, S=7):
    """Row 0: tokens 2.. see the image; row 1 has no image at all (its rows attend everything,
    as `FusionModel` builds it, and are zeroed by row_mask)."""
    kv = block.attention.image_kv(torch.randn(B, S, 32))
    attend = torch.zeros(B, T, S, dtype=torch.bool)
    attend[0, 2:] = True
    row = attend.any(-1, keepdim=True)
    return torch.randn(B, T, 32), ImageAttention(kv, (attend | ~row)[:, None], row.float())


def test_tanh_gate_starts_closed():
    gate = TanhGate()
    x = torch.randn(3, 4)
    assert torch.equal(gate(x), x * 0)
    gate.scale.data.fill_(1.0)
    torch.testing.assert_close(gate(x), x * torch.tanh(torch.tensor(1.0)))


def test_zero_gates_are_identity_and_masked_rows_stay_finite():
    torch.manual_seed(0)
    block = CrossAttentionBlock(32, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64)
    x, image = _inputs(block)
    assert torch.equal(block(x, image), x)
    block.attn_gate.scale.data.fill_(1.0)
    block.ffn_gate.scale.data.fill_(1.0)
    out = block(x, image)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], x[1]) and torch.equal(out[0, :2], x[0, :2])  # no image → untouched
    assert not torch.allclose(out[0, 2:], x[0, 2:])
    assert block.attention.image_kv(torch.randn(2, 7, 32))[0].shape == (2, 2, 7, 8)
