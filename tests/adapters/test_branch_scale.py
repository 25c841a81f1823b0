"""match_branch_scale: branches start as large as the LM layer updates beside them, outputs unchanged."""

import torch

from adapters.branch_scale import match_branch_scale
from fusion_fixtures import open_gates, sample_batch


def branch_norms(fused, tokens, images, ratio_ids) -> dict[int, tuple[float, float, float]]:
    """{i: (attn output norm, ffn output norm, LM layer i update norm)} over one forward."""
    seen = {}
    hooks = []
    for i in fused.schedule:
        block = fused.cross_attention_layers[str(i)]
        hooks += [block.attention.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(("a", i), o.norm(dim=-1).mean())),
                  block.feed_forward.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(("f", i), o.norm(dim=-1).mean())),
                  fused.layers[i].register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(("l", i), (o - a[0]).norm(dim=-1).mean()))]
    with torch.no_grad():
        fused(tokens, images=images, ratio_ids=ratio_ids)
    for h in hooks:
        h.remove()
    return {i: (float(seen["a", i]), float(seen["f", i]), float(seen["l", i])) for i in fused.schedule}


def test_branches_match_the_lm_updates_and_logits_stay_identical(fused):
    tokens, images, ratio_ids = sample_batch()
    with torch.no_grad():
        before = fused(tokens, images=images, ratio_ids=ratio_ids)
    factors = match_branch_scale(fused.layers, {i: fused.cross_attention_layers[str(i)] for i in fused.schedule},
                                 lambda: fused(tokens, images=images, ratio_ids=ratio_ids))
    with torch.no_grad():
        after = fused(tokens, images=images, ratio_ids=ratio_ids)
    assert torch.equal(before, after)  # gates at zero: the branches' size does not reach the output
    assert set(factors) == set(fused.schedule)
    for i, (attn, ffn, lm) in branch_norms(fused, tokens, images, ratio_ids).items():
        assert abs(attn / lm - 1) < 1e-4 and abs(ffn / lm - 1) < 1e-4, (i, attn, ffn, lm)
        assert factors[i]["attn"] != 1.0 and factors[i]["lm"] > 0


def test_open_gates_then_write_lm_sized_updates(fused):
    tokens, images, ratio_ids = sample_batch()
    match_branch_scale(fused.layers, {i: fused.cross_attention_layers[str(i)] for i in fused.schedule},
                       lambda: fused(tokens, images=images, ratio_ids=ratio_ids))
    open_gates(fused, 1.0)
    with torch.no_grad():
        gated = fused(tokens, images=images, ratio_ids=ratio_ids)
    open_gates(fused, 0.0)
    with torch.no_grad():
        plain = fused(tokens, images=images, ratio_ids=ratio_ids)
    assert (gated - plain).abs().max() > 1e-2  # the image now moves the logits visibly
