"""Autoregressive generation with a KV cache: greedy, temperature and top-p sampling, stop tokens,
streaming, and batches of prompts of different lengths (left-padded, per-row positions).

    out = generate(model, [prompt_ids], max_new_tokens=32)                  # greedy
    out = generate(model, prompts, max_new_tokens=64, temperature=0.8, top_p=0.9, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import torch
from torch import Tensor

from text.model import Transformer


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
) -> list[list[int]]:
    """New tokens for each prompt (prompt not included), stopping at a stop token or the limit.

    on_token(row, token) is called for every token as soon as it is chosen (streaming).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = model.output.weight.device
    batch, longest = len(prompts), max(len(p) for p in prompts)
    total = longest + max_new_tokens
    if total > model.config.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds max_seq_len {model.config.max_seq_len}")

    tokens = torch.zeros(batch, longest, dtype=torch.long, device=device)
    pad = torch.ones(batch, longest, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        tokens[i, longest - len(p):] = torch.as_tensor(list(p), device=device)
        pad[i, longest - len(p):] = False
    cache = model.new_cache(batch, total)
    positions = None
    if pad.any():
        cache.mark_padding(pad)
        positions = (~pad).long().cumsum(dim=1).sub(1).clamp(min=0)
    next_position = (~pad).long().sum(dim=1, keepdim=True)  # [B, 1]

    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stops = torch.tensor(list(stop_tokens), device=device, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    outputs: list[list[int]] = [[] for _ in range(batch)]

    padded = positions is not None
    logits = model(tokens, positions=positions, cache=cache)[:, -1]
    for step in range(max_new_tokens):
        chosen = _choose(logits, temperature, top_p, generator)
        for row in (~done).nonzero().flatten().tolist():
            token = int(chosen[row])
            outputs[row].append(token)
            if on_token is not None:
                on_token(row, token)
        if stops.numel():
            done |= torch.isin(chosen, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        logits = model(chosen[:, None], positions=next_position if padded else None, cache=cache)[:, -1]
        next_position = next_position + 1
    return outputs


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


__all__ = ["generate"]
