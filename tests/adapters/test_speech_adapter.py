"""Speech adapter (conv k3 s2 → rotary layer → linear) and its splice into the frozen LM."""

import pytest
import torch

from adapters.speech_adapter import build_speech_adapter
from adapters.policies import apply_policy, trainable_names
from adapters.speech_fusion import (SPEECH_FUSION_MODULES, SpeechFusion, speech_positions,
                                    build_speech_fusion, speech_span, speech_token_ids,
                                    splice_speech)
from speech.config import ConformerConfig, SpeechAdapterConfig, create_config
from speech.encoder import build_encoder
from text.config import create_config as text_config
from text.model import Transformer

ADAPTER = SpeechAdapterConfig(dim=32, n_heads=4, ffn_dim=64)
ENCODER = ConformerConfig(dim=32, n_layers=1, n_heads=4, ffn_dim=64, dropout=0.0)


def _fused(seed: int = 0) -> SpeechFusion:
    torch.manual_seed(seed)
    lm = Transformer(text_config("tiny", dim=64, n_layers=2, vocab_size=512, max_seq_len=256))
    return SpeechFusion(lm, build_encoder(ENCODER), build_speech_adapter(ADAPTER, enc_dim=32, lm_dim=64))


def _prompt(fused: SpeechFusion, feat_lengths: torch.Tensor) -> torch.Tensor:
    """Rows: 3 text tokens, the speech span, 4 text tokens; right-padded with token 0."""
    V = fused.vocab_size
    rows = [torch.cat([torch.tensor([5, 6, 7]), speech_span(n, V), torch.tensor([8, 9, 10, 11])])
            for n in fused.speech_lengths(feat_lengths)]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)


def test_stride_two_gives_80ms_tokens():
    adapter = build_speech_adapter(ADAPTER, enc_dim=32, lm_dim=64)
    for t in (1, 2, 7, 25, 26):
        out, lengths = adapter(torch.randn(1, t, 32), torch.tensor([t]))
        assert out.shape == (1, (t + 1) // 2, 64) and lengths.item() == (t + 1) // 2
    assert create_config("tiny").token_ms == 80.0


def test_paper_adapter_is_about_100m():
    cfg = create_config("1B")
    with torch.device("meta"):
        adapter = build_speech_adapter(cfg.adapter, enc_dim=cfg.encoder.dim, lm_dim=4096)
    n = sum(p.numel() for p in adapter.parameters())
    assert 85e6 < n < 105e6  # llama3-spec §5.3: ≈ 90–102M


def test_adapter_padding_invariance():
    torch.manual_seed(0)
    adapter = build_speech_adapter(ADAPTER, enc_dim=32, lm_dim=64).eval()
    frames, lengths = torch.randn(3, 13, 32), torch.tensor([13, 6, 9])
    out, out_lengths = adapter(frames, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, _ = adapter(frames[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(out[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-5)


def test_fused_padding_invariance_end_to_end():
    fused = _fused().eval()
    feats, feat_lengths = torch.randn(2, 70, 80), torch.tensor([70, 41])
    tokens = _prompt(fused, feat_lengths)
    with torch.no_grad():
        batch = fused(tokens, feats, feat_lengths)
        for i, n in enumerate(feat_lengths.tolist()):
            row = tokens[i:i + 1, : 3 + 2 + int(fused.speech_lengths(feat_lengths[i:i + 1])) + 4]
            alone = fused(row, feats[i:i + 1, :n], feat_lengths[i:i + 1])
            torch.testing.assert_close(batch[i, : row.shape[1]], alone[0], atol=1e-4, rtol=1e-4)


def test_span_positions_and_text_only_equivalence():
    fused = _fused().eval()
    V = fused.vocab_size
    start, end = speech_token_ids(V)
    assert (start, end) == (V + 2, V + 3)
    tokens = torch.tensor([[1, start, 9, 9, end, 2, start, 9, end]])
    assert speech_positions(tokens, V).int().tolist() == [[0, 0, 1, 1, 0, 0, 0, 1, 0]]
    # rows without speech: the fused embeddings are the LM's own, logits bit-identical
    text = torch.randint(0, V, (2, 12))
    with torch.no_grad():
        assert torch.equal(fused.text_model(embeds=fused.embed_tokens(text)), fused.text_model(text))
    with pytest.raises(ValueError, match="speech positions"):
        splice_speech(fused.embed_tokens(tokens), tokens, torch.zeros(1, 5, 64), torch.tensor([5]), V)


def test_logits_depend_only_on_adapter_outputs_at_span_positions():
    fused = _fused().eval()
    feat_lengths = torch.tensor([30, 19])
    tokens = _prompt(fused, feat_lengths)
    speech_lengths = fused.speech_lengths(feat_lengths)
    S = int(speech_lengths.max())
    speech = torch.randn(2, S, 64)
    inside = speech_positions(tokens, fused.vocab_size)
    with torch.no_grad():
        base = fused.text_model(embeds=fused.embed(tokens, speech, speech_lengths))
        # (1) adapter outputs past each utterance's length are never read
        garbage = speech.clone()
        garbage[1, speech_lengths[1]:] = 1e3
        assert torch.equal(fused.text_model(embeds=fused.embed(tokens, garbage, speech_lengths)), base)
        # (2) the spliced embeddings are exactly the adapter outputs; elsewhere the LM's own
        embeds = fused.embed(tokens, speech, speech_lengths)
        assert torch.equal(embeds[0, inside[0]], speech[0, : speech_lengths[0]])
        assert torch.equal(embeds[~inside], fused.embed_tokens(tokens)[~inside])
        # (3) changing one speech frame changes logits only from its position on (causal LM)
        moved = speech.clone()
        moved[0, 2] += 1.0
        logits = fused.text_model(embeds=fused.embed(tokens, moved, speech_lengths))
        pos = int(inside[0].nonzero()[2])
        assert torch.equal(logits[0, :pos], base[0, :pos]) and not torch.equal(logits[0, pos:], base[0, pos:])
        assert torch.equal(logits[1], base[1])
        # (4) audio features in the padding never matter
        feats = torch.randn(2, 30, 80)
        noisy = feats.clone()
        noisy[1, 19:] = 50.0
        assert torch.equal(fused(tokens, feats, feat_lengths), fused(tokens, noisy, feat_lengths))


def test_builder_and_cached_prefill_match_full_forward():
    torch.manual_seed(0)
    lm = Transformer(text_config("tiny", dim=64, n_layers=2, vocab_size=512, max_seq_len=256))
    fused = build_speech_fusion(lm, create_config("tiny")).eval()
    assert fused.speech_encoder.dim == 144 and fused.speech_adapter.proj.out_features == 64
    feats, feat_lengths = torch.randn(1, 50, 80), torch.tensor([50])
    tokens = _prompt(fused, feat_lengths)
    with torch.no_grad():
        full = fused(tokens, feats, feat_lengths)
        cache = fused.new_cache(1, 64)
        prefill = fused(tokens[:, :-2], feats, feat_lengths, cache=cache)
        step = fused(tokens[:, -2:-1], cache=cache)
    torch.testing.assert_close(prefill, full[:, :-2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step, full[:, -2:-1], atol=1e-5, rtol=1e-5)


def test_state_dict_keeps_the_lm_keys_and_loads_a_text_checkpoint():
    fused = _fused()
    lm_keys = set(fused.text_model.state_dict())
    speech_keys = fused.adapter_state_keys()
    assert set(fused.state_dict()) == lm_keys | speech_keys and not lm_keys & speech_keys
    assert {k.split(".")[0] for k in speech_keys} == {"learnable_embedding", "speech_encoder",
                                                      "speech_adapter"}
    assert set(fused.fusion_params()) == {n for n, _ in fused.named_parameters()
                                          if n.split(".")[0] in SPEECH_FUSION_MODULES}
    other = _fused(seed=1).text_model.state_dict()
    assert set(fused.load_text_state_dict(other)) == speech_keys
    assert torch.equal(fused.tok_embeddings.weight, other["tok_embeddings.weight"])
    with pytest.raises(ValueError, match="does not fit"):
        fused.load_text_state_dict({k: v for k, v in other.items() if k != "norm.weight"})


def test_training_step_leaves_the_lm_bit_identical():
    fused = _fused().train()
    # the speech-adapter stage's trainable set: encoder, adapter and new rows; the LM is frozen
    params = apply_policy(fused, set(fused.fusion_params()))
    assert trainable_names(fused) == fused.adapter_state_keys() - {
        k for k, _ in fused.named_buffers()}
    lm_before = {k: v.clone() for k, v in fused.text_model.state_dict().items()}
    trainable = fused.fusion_params()
    speech_before = {k: v.clone() for k, v in trainable.items()}
    opt = torch.optim.AdamW(params, lr=1e-2)
    feats, feat_lengths = torch.randn(2, 30, 80), torch.tensor([30, 22])
    tokens = _prompt(fused, feat_lengths)
    logits = fused(tokens, feats, feat_lengths)
    loss = torch.nn.functional.cross_entropy(logits[:, -5:-1].flatten(0, 1), tokens[:, -4:].flatten())
    loss.backward()
    opt.step()
    for k, v in fused.text_model.state_dict().items():
        assert torch.equal(v, lm_before[k]), k
    assert all(p.grad is None for p in fused.text_model.parameters())
    for name in ("speech_encoder.front_end.proj.weight", "speech_adapter.proj.weight",
                 "learnable_embedding.weight"):
        assert not torch.equal(trainable[name], speech_before[name]), name
