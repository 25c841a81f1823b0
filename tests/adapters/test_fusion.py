import pytest
import torch

from adapters.fusion import (FUSION_MODULES, FusionConfig, ImageSpans, build_fusion_model,
                             fusion_schedule, image_attendance)
from fusion_fixtures import TEXT, V, VISION, open_gates, sample_batch


@pytest.mark.parametrize("n_layers, n_cross, expected", [
    (32, 8, [3, 7, 11, 15, 19, 23, 27, 31]),  # Llama 3.2 11B
    (80, 20, list(range(3, 80, 4))),           # 90B
    (4, 2, [1, 3]),
    (6, 1, [5]),
    (6, 3, [1, 3, 5]),
])
def test_fusion_schedule(n_layers, n_cross, expected):
    assert fusion_schedule(n_layers, n_cross) == expected


@pytest.mark.parametrize("bf16", [False, True])
def test_zero_gates_give_the_text_lm_logits_bit_for_bit(lm, fused, bf16):
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        text_only = tokens.clamp(max=V - 1)
        assert torch.equal(fused(text_only), lm(text_only))
        # Images present and attended: still the LM's logits on the same input embeddings.
        assert torch.equal(fused(tokens, images=images, ratio_ids=ratio_ids),
                           lm(embeds=fused.embed(tokens)))
        assert torch.equal(fused(text_only, images=images, ratio_ids=ratio_ids), lm(text_only))


def test_state_dict_keys_and_loading_a_text_checkpoint(lm, fused):
    lm_keys = set(lm.state_dict())
    keys = set(fused.state_dict())
    assert lm_keys <= keys  # LM keys unchanged
    adapter = keys - lm_keys
    assert adapter == fused.adapter_state_keys()
    assert {k.split(".")[0] for k in adapter} == set(FUSION_MODULES)
    # A fresh fused model loads the text checkpoint: exactly the adapter keys are missing.
    torch.manual_seed(5)
    from text.model import Transformer
    other = build_fusion_model(Transformer(TEXT), VISION, FusionConfig(cross_attention_every=2))
    missing = other.load_text_state_dict(lm.state_dict())
    assert set(missing) == adapter
    for k, v in lm.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    with pytest.raises(ValueError, match="does not fit"):
        other.load_text_state_dict({**lm.state_dict(), "extra.weight": torch.zeros(1)})
    bad = dict(lm.state_dict())
    del bad["norm.weight"]
    with pytest.raises(ValueError, match="does not fit"):
        other.load_text_state_dict(bad)


def test_new_token_rows(lm, fused):
    assert fused.learnable_embedding.num_embeddings == 8
    assert fused.output.out_features == V  # the head keeps V rows
    tokens = torch.tensor([[1, V, V + 1, V + 7, 5]])
    e = fused.embed(tokens)
    assert torch.equal(e[0, 1], fused.learnable_embedding.weight[0])
    assert torch.equal(e[0, 3], fused.learnable_embedding.weight[7])
    assert torch.equal(e[0, [0, 4]], lm.tok_embeddings(tokens[0, [0, 4]]))


def _attend(tokens, n_images):
    return image_attendance(tokens, V, ImageSpans.start(tokens.shape[0], n_images, tokens.device))


def test_text_attends_its_image_until_the_next_image_token():
    I, t = V, 1
    tokens = torch.tensor([[t, I, t, t, I, t, t]])
    attend, _ = _attend(tokens, 2)
    assert attend[0].int().tolist() == [
        [0, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]]
    # Consecutive image tokens: the text after them attends to all of them.
    tokens = torch.tensor([[t, I, I, t, t, I, t]])
    attend, _ = _attend(tokens, 3)
    assert attend[0].int().tolist() == [
        [0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]]


def test_attendance_state_carries_across_chunks():
    I, t = V, 1
    tokens = torch.tensor([[t, I, t, I, I, t, t, I, t], [I, t, t, t, t, t, t, t, t]])
    full, _ = _attend(tokens, 4)
    spans = ImageSpans.start(2, 4, tokens.device)
    parts = []
    for s, e in [(0, 2), (2, 4), (4, 5), (5, 8), (8, 9)]:
        a, spans = image_attendance(tokens[:, s:e], V, spans)
        parts.append(a)
    assert torch.equal(torch.cat(parts, 1), full)


def test_model_text_sees_only_its_own_image(fused):
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad():
        base = fused(tokens, images=images, ratio_ids=ratio_ids)
        # Change row 1's second image: tokens before its <|image|> (t < 9) are unaffected.
        changed = images.clone()
        changed[1, 1] += 3.0
        other = fused(tokens, images=changed, ratio_ids=ratio_ids)
        assert torch.equal(other[1, :9], base[1, :9])
        assert not torch.allclose(other[1, 9:], base[1, 9:])
        assert torch.equal(other[0], base[0])
        # Padding tiles (row 0's 1×2 image) and padding images never matter.
        changed = images.clone()
        changed[0, 0, 2:] = 50.0
        changed[0, 1] = -7.0  # a padding image
        torch.testing.assert_close(fused(tokens, images=changed, ratio_ids=ratio_ids), base,
                                   rtol=0, atol=1e-5)


def test_text_rows_without_image_are_finite_and_unchanged(lm, fused):
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad():
        out = fused(tokens, images=images, ratio_ids=ratio_ids)
        ref = lm(embeds=fused.embed(tokens))
    assert torch.isfinite(out).all()
    # Tokens before the first image see no image: their logits equal the LM's.
    assert torch.equal(out[0, :2], ref[0, :2]) and torch.equal(out[1, :4], ref[1, :4])
    assert not torch.allclose(out[0, 2:], ref[0, 2:])


def test_cached_decoding_equals_full_forward_with_image(fused):
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch(T=16)
    with torch.no_grad():
        full = fused(tokens, images=images, ratio_ids=ratio_ids)
        cache = fused.new_cache(2, 32)
        steps = [fused(tokens[:, :6], images=images, ratio_ids=ratio_ids, cache=cache)]
        # Decode one token at a time (the second image token of row 1 arrives while decoding).
        steps += [fused(tokens[:, t:t + 1], cache=cache) for t in range(6, 16)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)


def test_text_only_input_skips_cross_attention(fused):
    open_gates(fused)
    calls = []
    for block in fused.cross_attention_layers.values():
        block.register_forward_hook(lambda *a: calls.append(1))
    tokens = torch.randint(0, V, (1, 5))
    cache = fused.new_cache(1, 8)
    with torch.no_grad():
        fused(tokens, cache=cache)
        fused(tokens[:, :1], cache=cache)
    assert calls == []
    fused(*sample_batch()[:1], images=sample_batch()[1], ratio_ids=sample_batch()[2])
    assert len(calls) == len(fused.schedule)


def test_fusion_params_are_the_adapter_parameters(fused, lm):
    names = set(fused.fusion_params())
    lm_names = {n for n, _ in lm.named_parameters()}
    assert names.isdisjoint(lm_names)
    assert names | lm_names == {n for n, _ in fused.named_parameters()}


def test_tied_embeddings_load_like_the_lm():
    from text.model import Transformer

    config = TEXT.__class__.from_dict({**TEXT.to_dict(), "tie_embeddings": True})
    lm = Transformer(config)
    fused = build_fusion_model(Transformer(config), VISION, FusionConfig(cross_attention_every=2))
    missing = fused.load_text_state_dict(lm.state_dict())
    assert set(missing) == fused.adapter_state_keys()
    assert "output.weight" not in fused.state_dict()
    assert fused.output.weight is fused.tok_embeddings.weight
    assert torch.equal(fused.output.weight, lm.output.weight)


def test_images_attached_to_the_cache_equal_images_in_the_prompt(fused):
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad():
        full = fused(tokens, images=images, ratio_ids=ratio_ids)
        cache = fused.new_cache(2, 32)
        fused.attach_images(cache, images, ratio_ids)
        steps = [fused(tokens[:, :5], cache=cache), fused(tokens[:, 5:], cache=cache)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        fused.attach_images(cache, images, ratio_ids)


def test_spec_rebuilds_the_same_model(fused):
    from adapters.fusion import from_spec
    from train.models import build_from_spec

    spec = fused.spec()
    assert spec["arch"] == "llama3-vision" and spec["fusion"]["cross_attention_every"] == 2
    rebuilt = build_from_spec(spec)
    assert type(rebuilt) is type(from_spec(spec)) and rebuilt.schedule == fused.schedule
    rebuilt.load_state_dict(fused.state_dict(), strict=True)
    open_gates(fused)
    open_gates(rebuilt)
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad():
        assert torch.equal(rebuilt(tokens, images=images, ratio_ids=ratio_ids),
                           fused(tokens, images=images, ratio_ids=ratio_ids))


def test_padding_tiles_and_padding_images_do_not_change_logits(fused):
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    noisy = images.clone()
    noisy[0, 0, 2:] = torch.randn_like(noisy[0, 0, 2:])  # row 0's 1×2 image: tiles 2-3 are padding
    noisy[0, 1] = torch.randn_like(noisy[0, 1])  # row 0's second image slot is a padding image
    with torch.no_grad():
        torch.testing.assert_close(fused(tokens, images=noisy, ratio_ids=ratio_ids),
                                   fused(tokens, images=images, ratio_ids=ratio_ids), rtol=1e-5, atol=1e-6)


def test_training_step_leaves_the_lm_bit_identical(fused, lm):
    from adapters.policies import apply_policy, vision_adapter_policy

    open_gates(fused, 0.1)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    rows = fused.learnable_embedding.weight.detach().clone()
    params = apply_policy(fused, vision_adapter_policy(fused))
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    tokens, images, ratio_ids = sample_batch()
    for _ in range(2):
        logits = fused(tokens[:, :-1], images=images, ratio_ids=ratio_ids)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].clamp(max=V - 1).flatten()).backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())
    assert not torch.equal(fused.learnable_embedding.weight, rows)  # the <|image|> row trained


def test_greedy_generate_with_attached_images_follows_the_full_forward(fused):
    from text.generate import generate

    open_gates(fused)
    tokens, images, ratio_ids = sample_batch(T=12)
    prompts = tokens.tolist()
    out = generate(fused, prompts, max_new_tokens=4, attach=lambda c: fused.attach_images(c, images, ratio_ids))
    with torch.no_grad():
        full = fused(torch.cat([tokens, torch.tensor(out)[:, :-1]], 1), images=images, ratio_ids=ratio_ids)
    assert torch.equal(full[:, 11:].argmax(-1), torch.tensor(out))


def test_logits_at_marked_positions_equal_the_full_logits(lm, fused):
    """`logits_at` (the supervised positions of a loss) skips the output projection elsewhere but
    changes nothing where it runs — for the text LM and the fused model alike."""
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    at = torch.zeros_like(tokens, dtype=torch.bool)
    at[0, 3:7] = at[1, -4:] = True
    with torch.no_grad():
        full = fused(tokens, images=images, ratio_ids=ratio_ids)
        torch.testing.assert_close(fused(tokens, images=images, ratio_ids=ratio_ids, logits_at=at), full[at])
        text = tokens.clamp(max=V - 1)
        torch.testing.assert_close(lm(text, logits_at=at), lm(text)[at])


def test_packed_documents_see_only_themselves_and_their_own_image(fused):
    """Two rows packed into one (doc_ids) give each row's own logits: attention, positions and
    image attendance stop at the document boundary, so the second document's header (before its
    `<|image|>`) does not see the first document's image."""
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch(T=10)
    first, second = tokens[0, :7].clone(), tokens[1, :10].clone()
    second[4], second[9] = 7, 7  # one <|image|> each: at t=2 of the first, t=3 of the second
    second[3] = V
    packed = torch.cat([first, second])[None]
    doc_ids = torch.tensor([[0] * 7 + [1] * 10])
    pair_images = torch.stack([images[0, 0], images[1, 0]])[None]
    pair_ratios = torch.tensor([[ratio_ids[0, 0], ratio_ids[1, 0]]])
    with torch.no_grad():
        together = fused(packed, images=pair_images, ratio_ids=pair_ratios, doc_ids=doc_ids)
        alone = [fused(row[None], images=pair_images[:, n:n + 1], ratio_ids=pair_ratios[:, n:n + 1])
                 for n, row in enumerate((first, second))]
    torch.testing.assert_close(together[:, :7], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(together[:, 7:], alone[1], rtol=0, atol=1e-5)


def test_skipping_positions_after_the_last_needed_one_keeps_the_gradients(fused):
    """With `logits_at`, the position-wise layers skip every position after a row's last marked one
    (`text.attention.needed_rows`): nothing marked attends there, so the loss and every gradient of a
    training step are those of the full forward."""
    from text.attention import needed_rows

    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    at = torch.zeros_like(tokens, dtype=torch.bool)
    at[0, 3:7] = at[1, 8:11] = True
    assert needed_rows(at).tolist() == [*range(7), *range(14, 14 + 11)]
    assert needed_rows(torch.ones_like(at)) is None
    targets = tokens.roll(-1, 1)[at] % V

    def grads(loss):
        fused.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in fused.named_parameters() if p.grad is not None}

    full = grads(torch.nn.functional.cross_entropy(fused(tokens, images=images, ratio_ids=ratio_ids)[at], targets))
    skipped = grads(torch.nn.functional.cross_entropy(
        fused(tokens, images=images, ratio_ids=ratio_ids, logits_at=at), targets))
    assert full.keys() == skipped.keys() and len(full) > 10
    for name in full:
        torch.testing.assert_close(skipped[name], full[name], rtol=1e-4, atol=1e-6, msg=name)
