"""Invariants of the Llama 3 decoder on tiny configs: document masking, KV cache, gradients,
RoPE 3.1 scaling against the formula, tied embeddings, long sequences without a T×T mask."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import text.attention as attention
from text.config import RopeScaling, create_config
from text.model import Transformer, fused_projections
from text.rope import rope_frequencies

TOL = dict(atol=1e-5, rtol=1e-5)


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    values = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, max_seq_len=512)
    torch.manual_seed(seed)
    return Transformer(create_config("tiny", **{**values, **overrides})).eval()


@pytest.fixture
def model() -> Transformer:
    return tiny_model()


def test_state_dict_keys_are_meta_style(model):
    layer = {"attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
             "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
             "attention_norm.weight", "ffn_norm.weight"}
    expected = {"tok_embeddings.weight", "norm.weight", "output.weight"}
    expected |= {f"layers.{i}.{k}" for i in range(2) for k in layer}
    assert set(model.state_dict()) == expected


@pytest.mark.parametrize("chunk", [None, 16])
def test_packed_documents_equal_each_alone(model, monkeypatch, chunk):
    if chunk is not None:  # queries in chunks smaller than T: the path long sequences take
        monkeypatch.setattr(attention, "QUERY_CHUNK", chunk)
    torch.manual_seed(1)
    a, b = torch.randint(0, 512, (1, 23)), torch.randint(0, 512, (1, 30))
    packed = torch.cat([a, b], dim=1)
    doc_ids = torch.cat([torch.zeros(1, 23), torch.ones(1, 30)], dim=1).long()
    with torch.no_grad():
        logits = model(packed, doc_ids=doc_ids)
        torch.testing.assert_close(logits[:, :23], model(a), **TOL)
        torch.testing.assert_close(logits[:, 23:], model(b), **TOL)
        # Without doc_ids the second document does see the first: the mask is what separates them.
        assert not torch.allclose(model(packed)[:, 23:], model(b), atol=1e-4)


def test_packed_rows_with_different_boundaries(model, monkeypatch):
    monkeypatch.setattr(attention, "QUERY_CHUNK", 8)
    torch.manual_seed(2)
    tokens = torch.randint(0, 512, (2, 40))
    doc_ids = torch.zeros(2, 40, dtype=torch.long)
    doc_ids[0, 10:], doc_ids[0, 31:] = 1, 2
    doc_ids[1, 25:] = 1
    with torch.no_grad():
        logits = model(tokens, doc_ids=doc_ids)
        for row, bounds in ((0, [0, 10, 31, 40]), (1, [0, 25, 40])):
            for s, e in zip(bounds, bounds[1:]):
                torch.testing.assert_close(logits[row, s:e], model(tokens[row:row + 1, s:e])[0], **TOL)


def test_kv_cache_prefill_and_decode_equal_full_forward(model):
    torch.manual_seed(3)
    tokens = torch.randint(0, 512, (2, 20))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(2, 20)
        steps = [model(tokens[:, :12], cache=cache)]
        steps.append(model(tokens[:, 12:15], cache=cache))  # a multi-token step mid-cache
        steps += [model(tokens[:, t:t + 1], cache=cache) for t in range(15, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_left_padded_batch_with_positions_equals_rows_alone(model):
    torch.manual_seed(4)
    rows = [torch.randint(0, 512, (n,)) for n in (9, 4, 7)]
    extra = torch.randint(0, 512, (3, 5))  # decoded tokens fed after the prompts
    longest = 9
    tokens = torch.zeros(3, longest, dtype=torch.long)
    pad = torch.ones(3, longest, dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, longest - len(r):], pad[i, longest - len(r):] = r, False
    positions = ((~pad).long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        cache = model.new_cache(3, longest + 5)
        cache.mark_padding(pad)
        prefill = model(tokens, positions=positions, cache=cache)
        next_pos = (~pad).sum(1, keepdim=True)
        decoded = [model(extra[:, t:t + 1], positions=next_pos + t, cache=cache) for t in range(5)]
        decoded = torch.cat(decoded, dim=1)
        for i, r in enumerate(rows):
            alone = model(torch.cat([r, extra[i]])[None])[0]
            torch.testing.assert_close(prefill[i, longest - len(r):], alone[: len(r)], **TOL)
            torch.testing.assert_close(decoded[i], alone[len(r):], **TOL)


def test_fused_projections_give_the_same_logits(model):
    tokens = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        plain = model(tokens)
        with fused_projections(model):
            fused = model(tokens)
        assert all(layer.attention.fused is None for layer in model.layers)
    torch.testing.assert_close(fused, plain, **TOL)


@pytest.mark.parametrize("tied", [False, True])
def test_every_parameter_gets_a_finite_gradient(tied):
    model = tiny_model(tie_embeddings=tied).train()
    torch.manual_seed(5)
    tokens = torch.randint(0, 512, (2, 33))
    doc_ids = (torch.arange(33) >= 20).long().expand(2, 33)
    logits = model(tokens[:, :-1], doc_ids=doc_ids[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bf16_autocast_forward_is_close_to_fp32(model):
    tokens = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        full = model(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(tokens)
    assert low.dtype == torch.bfloat16
    assert (low.float() - full).abs().max() < 0.05


@pytest.mark.parametrize("keys", [48, attention.UPCAST_MAX_KEYS + 1])
def test_sdpa_runs_short_differentiated_bf16_cpu_attention_in_fp32(keys):
    """Training rows up to UPCAST_MAX_KEYS keys get fp32 attention (the CPU bf16 backward is slow
    there), even under autocast; longer rows and no-grad passes keep PyTorch's bf16 kernel."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, keys, 16, generator=g).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention.sdpa(q, k, v, is_causal=True)
        with torch.no_grad():
            plain = attention.sdpa(q, k, v, is_causal=True)
    fp32 = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    bf16 = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.equal(fp32.bfloat16(), bf16)  # the two paths are told apart
    assert out.dtype == plain.dtype == torch.bfloat16
    assert torch.equal(plain, bf16)
    assert torch.equal(out, (fp32 if keys <= attention.UPCAST_MAX_KEYS else bf16).bfloat16())
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad).all()


def _llama31_frequencies_by_the_formula(head_dim: int, theta: float, s: RopeScaling) -> list[float]:
    """llama3-spec §1.4 written out per frequency, in plain Python floats."""
    out = []
    low_wavelen = s.original_max_seq_len / s.low_freq_factor
    high_wavelen = s.original_max_seq_len / s.high_freq_factor
    for i in range(0, head_dim, 2):
        f = 1.0 / theta ** (i / head_dim)
        wavelen = 2 * math.pi / f
        if wavelen > low_wavelen:
            out.append(f / s.factor)
        elif wavelen < high_wavelen:
            out.append(f)
        else:
            smooth = (s.original_max_seq_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
            out.append((1 - smooth) * f / s.factor + smooth * f)
    return out


@pytest.mark.parametrize("head_dim", [32, 128])
def test_rope_llama31_scaling_matches_the_formula(head_dim):
    scaling = RopeScaling()
    expected = torch.tensor(_llama31_frequencies_by_the_formula(head_dim, 500_000.0, scaling), dtype=torch.float64)
    got = rope_frequencies(head_dim, 500_000.0, scaling).double()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    plain = rope_frequencies(head_dim, 500_000.0, None).double()
    # All three regimes occur at head_dim 128: untouched, divided by 8, and blended in between.
    ratio = plain / got
    if head_dim == 128:
        assert (ratio == 1).any() and torch.isclose(ratio, torch.tensor(8.0, dtype=ratio.dtype)).any()
        assert ((ratio > 1.0001) & (ratio < 7.999)).any()


def test_rope_scaling_changes_the_model_only_where_it_should():
    torch.manual_seed(6)
    tokens = torch.randint(0, 512, (1, 32))
    plain = tiny_model(seed=7)
    scaled = tiny_model(seed=7, rope_scaling=RopeScaling(original_max_seq_len=64))
    with torch.no_grad():
        assert not torch.allclose(plain(tokens), scaled(tokens))
        assert torch.allclose(plain(tokens[:, :1]), scaled(tokens[:, :1]))  # position 0: no rotation


def test_tied_embeddings_share_one_table_and_round_trip_a_checkpoint(tmp_path):
    from train.checkpoint import load_text_model, save_checkpoint, text_model_meta

    model = tiny_model(tie_embeddings=True)
    assert model.output.weight is model.tok_embeddings.weight
    untied_count = sum(p.numel() for p in tiny_model().parameters())
    assert sum(p.numel() for p in model.parameters()) == untied_count - 512 * 64
    state = model.state_dict()
    assert "output.weight" not in state  # stored once: safetensors refuses aliased tensors
    save_checkpoint(tmp_path / "ckpt", state, {"stage": "test", "step": 0, "model": text_model_meta(model)})
    loaded = load_text_model(tmp_path / "ckpt")
    assert loaded.output.weight is loaded.tok_embeddings.weight
    tokens = torch.randint(0, 512, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens), atol=0, rtol=0)
    # A tied state dict loads strictly into a fresh tied model, and the tie survives assign=True.
    fresh = tiny_model(seed=1, tie_embeddings=True)
    fresh.load_state_dict(state, strict=True, assign=True)
    assert fresh.output.weight is fresh.tok_embeddings.weight


def test_long_packed_sequence_never_builds_a_T_by_T_mask(monkeypatch):
    """4K tokens of packed documents: every attention mask is at most QUERY_CHUNK rows."""
    model = tiny_model(n_layers=1, max_seq_len=4096)
    T = 4096
    masks = []
    real_sdpa = attention.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        if attn_mask is not None:
            masks.append(tuple(attn_mask.shape))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    doc_ids = (torch.arange(T) // 1000).expand(1, T)  # documents of 1000 tokens
    tokens = torch.randint(0, 512, (1, T))
    with torch.no_grad():
        logits = model(tokens, doc_ids=doc_ids)
    assert logits.shape == (1, T, 512)
    assert len(masks) == math.ceil(T / attention.QUERY_CHUNK) > 1
    for shape in masks:
        assert shape[-2] <= attention.QUERY_CHUNK and shape[-2] * shape[-1] < T * T // 2
    with torch.no_grad():  # and the last document still equals itself alone
        alone = model(tokens[:, 4000:])
    torch.testing.assert_close(logits[:, 4000:], alone, **TOL)


def test_meta_device_build_allocates_nothing():
    with torch.device("meta"):
        model = Transformer(create_config("8B"))
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())


def test_config_round_trips_through_dict():
    config = create_config("8B")
    from text.config import TextConfig

    assert TextConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        TextConfig.from_dict({**config.to_dict(), "bogus": 1})
    assert dataclasses.replace(config, dim=4096).ffn_hidden_dim == 14_336
