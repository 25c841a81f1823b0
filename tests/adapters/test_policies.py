import torch

from adapters.policies import apply_policy, trainable_names, vision_adapter_policy
from fusion_fixtures import V, open_gates, sample_batch


def test_trainable_set_equals_the_policy(fused, lm):
    names = vision_adapter_policy(fused)
    params = apply_policy(fused, names)
    assert trainable_names(fused) == names == set(fused.fusion_params())
    assert len(params) == len(names)
    lm_names = {n for n, _ in lm.named_parameters()}
    assert not any(p.requires_grad for p in lm.parameters())  # the wrapped LM is frozen
    assert names.isdisjoint(lm_names)
    assert "learnable_embedding.weight" in names and "tok_embeddings.weight" not in names
    assert any(n.startswith("vision_encoder.") for n in names)
    assert any(n.startswith("vision_projection.") for n in names)
    assert any(n.startswith("cross_attention_layers.") for n in names)


def test_every_trainable_parameter_gets_a_gradient_once_gates_open(fused):
    apply_policy(fused, vision_adapter_policy(fused))
    open_gates(fused)
    tokens, images, ratio_ids = sample_batch()
    tokens[0, 5] = V + 1  # a second new token row
    logits = fused(tokens, images=images, ratio_ids=ratio_ids)
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1),
                                      tokens[:, 1:].clamp(max=V - 1).flatten()).backward()
    for name, p in fused.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # Only the rows of tokens that occur get gradient: <|image|> (row 0) and V+1 (row 1).
    rows = fused.learnable_embedding.weight.grad.abs().sum(-1) > 0
    assert rows.tolist() == [True, True] + [False] * 6


def test_gates_get_gradient_at_zero(fused):
    """At initialisation the gates are the only adapter parameters with a gradient path that
    reaches the loss, and they do get one — training can open them."""
    apply_policy(fused, vision_adapter_policy(fused))
    tokens, images, ratio_ids = sample_batch()
    fused(tokens, images=images, ratio_ids=ratio_ids).square().mean().backward()
    for block in fused.cross_attention_layers.values():
        assert block.attn_gate.scale.grad.abs().item() > 0
        assert block.ffn_gate.scale.grad.abs().item() > 0
