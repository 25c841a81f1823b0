"""Autoregressive generation with a KV cache: greedy, temperature and top-p sampling, stop tokens,
streaming, and batches of prompts of different lengths (left-padded, per-row positions).

    out = generate(model, [prompt_ids], max_new_tokens=32)                  # greedy
    out = generate(model, prompts, max_new_tokens=64, temperature=0.8, top_p=0.9, seed=0)

At small sizes a decoding step is bound by per-call overhead, not FLOPs, so the loop keeps the
work per token minimal: logits only for the last position, q/k/v and w1/w3 weights
pre-concatenated (`fused_projections`), rotary tables sliced rather than gathered when no row is
padded, the attention mask built once per step, and one host sync per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from text.model import Transformer, fused_projections

FUSE_MAX_BYTES = 1 << 30
"""Pre-concatenate projection weights for decoding only when the extra copy stays below this:
larger models are bound by their matmuls, and the copy would cost memory for nothing."""


@torch.inference_mode()
def generate(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_tokens: Sequence[int] = (),
    seed: int | None = None,
    on_token: Callable[[int, int], None] | None = None,
    attach: Callable[[object], None] | None = None,
) -> list[list[int]]:
    """New tokens for each prompt (prompt not included), stopping at a stop token or the limit.

    A row stops after emitting a stop token (which is included in its output); the others go
    on. on_token(row, token) is called for every token as soon as it is chosen (streaming).
    attach(cache) runs on the fresh cache before the prompt: how a fused model receives the
    prompt's media, e.g. `attach=lambda c: fused.attach_images(c, pixels, ratio_ids)`.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = model.output.weight.device
    batch, longest = len(prompts), max(len(p) for p in prompts)
    total = longest + max_new_tokens
    if total > model.config.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds max_seq_len {model.config.max_seq_len}")

    tokens = torch.zeros(batch, longest, dtype=torch.long)
    pad = torch.ones(batch, longest, dtype=torch.bool)
    for i, p in enumerate(prompts):
        tokens[i, longest - len(p):] = torch.as_tensor(list(p))
        pad[i, longest - len(p):] = False
    tokens, pad = tokens.to(device), pad.to(device)
    cache = model.new_cache(batch, total)
    if attach is not None:
        attach(cache)
    positions = next_position = None
    if bool(pad.any()):
        cache.mark_padding(pad)
        positions = (~pad).long().cumsum(dim=1).sub(1).clamp(min=0)
        next_position = (~pad).long().sum(dim=1, keepdim=True)  # [B, 1]

    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stops = set(stop_tokens)
    live = list(range(batch))
    outputs: list[list[int]] = [[] for _ in range(batch)]
    with _maybe_fused(model):
        logits = _last_logits(model, tokens, positions, cache)
        for step in range(max_new_tokens):
            chosen = _choose(logits, temperature, top_p, generator)
            row_tokens = chosen.tolist()  # the step's one host sync
            for row in live:
                outputs[row].append(row_tokens[row])
                if on_token is not None:
                    on_token(row, row_tokens[row])
            live = [row for row in live if row_tokens[row] not in stops]
            if not live or step == max_new_tokens - 1:
                break
            logits = _last_logits(model, chosen[:, None], next_position, cache)
            if next_position is not None:
                next_position = next_position + 1
    return outputs


def _last_logits(model: Transformer, tokens: Tensor, positions: Tensor | None, cache) -> Tensor:
    """Logits [B, V] of the last position only (the output projection is the largest matmul)."""
    return model.output(model.hidden_states(tokens, positions=positions, cache=cache)[:, -1])


def _maybe_fused(model: Transformer) -> contextlib.AbstractContextManager:
    fused_bytes = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                      if name.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight")))
    return fused_projections(model) if fused_bytes <= FUSE_MAX_BYTES else contextlib.nullcontext()


def _choose(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """logits [B, V] → chosen token ids [B]."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p (the first is always kept).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = ["generate", "FUSE_MAX_BYTES"]
