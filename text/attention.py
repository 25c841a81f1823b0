"""Grouped-query self-attention with RoPE, document masking and a KV cache (llama3-spec §1.1).

Three ways a forward pass attends, all through `sdpa` (`F.scaled_dot_product_attention`, see there):
- one document per row, no cache: plain causal attention (`is_causal`, no mask is built);
- packed documents (`doc_ids`): a block-diagonal causal mask, built per chunk of queries so
  memory grows with T·chunk rather than T² (a 32K-token row never materialises a T×T mask);
- decoding with a `KVCache`: the new queries attend to every filled cache slot up to their own,
  minus slots marked as padding (left-padded batches).

A training pass that reads only some outputs (a loss on the supervised tokens) names the rows it
needs (`needed_rows`); the feed-forward layers, ~3/4 of a layer's matmuls, then compute those rows
only (`at_rows`). The attention projections stay whole: their gather and scatter cost more than
the skipped rows saved (measured at `tiny`, 2026-12-06).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text.rope import rotate

QUERY_CHUNK = 2048
"""Packed-document attention builds its mask for this many queries at a time."""

UPCAST_MAX_KEYS = 512
"""`sdpa` computes bf16/fp16 CPU attention in fp32 when it will be differentiated and a row has at
most this many keys (`benchmarks/cpu_attention.py`: 5× faster at 48–65 keys, 1.35× at 256, even at 512;
the bf16 kernel wins from 1,024 keys on)."""


def sdpa(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> Tensor:
    """`F.scaled_dot_product_attention`, with one CPU exception: reduced-precision q/k/v that will
    be differentiated run in fp32 when rows are short, because PyTorch's bf16 flash-attention
    backward on CPU is several times slower than its fp32 one there. Same arguments and result
    dtype; every attention of herd (text, cross-attention, vision, video, speech) goes through it.
    """
    if (q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and k.shape[-2] <= UPCAST_MAX_KEYS
            and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
        mask = kwargs.get("attn_mask")
        if mask is not None and mask.is_floating_point():
            kwargs["attn_mask"] = mask.float()
        with torch.autocast("cpu", enabled=False):  # CPU autocast would cast q/k/v back to bf16
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class KVCache:
    """Per-layer key/value buffers [B, n_kv_heads, max_len, head_dim], filled slot by slot.

    All rows share the slot index (`filled`); rows of different lengths are left-padded and the
    padding slots are excluded through `key_valid` [B, max_len].
    """

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, max_len: int, head_dim: int,
                 *, dtype: torch.dtype, device: torch.device | str):
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.has_padding = False
        self.max_len = max_len
        self.filled = 0
        self._mask: Tensor | None = None
        self._mask_for: tuple[int, int] | None = None

    def mark_padding(self, pad: Tensor) -> None:
        """pad [B, T0] bool: slots [0, T0) that hold padding and must never be attended."""
        self.key_valid[:, : pad.shape[1]] = ~pad
        self.has_padding = bool(pad.any())
        self._mask_for = None

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v [B, n_kv, T, hd] at slots [filled, filled+T); return all filled slots so far."""
        start, end = self.filled, self.filled + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} slots needed, {self.max_len} allocated")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Called once per forward, after every layer has written its n new slots."""
        self.filled += n

    def attention_mask(self, start: int, end: int) -> Tensor:
        """[B, 1, end-start, end] bool: query slots [start, end) may see filled, causal, non-padding
        slots. Built once per pass and shared by every layer."""
        if self._mask_for != (start, end):
            slots = torch.arange(end, device=self.key_valid.device)
            queries = torch.arange(start, end, device=self.key_valid.device)[:, None]
            mask = (queries >= slots)[None, None] & self.key_valid[:, None, None, :end]
            # A left-padded row's padding queries see no valid key; let them see themselves so
            # that no softmax row is empty (their outputs are never used).
            self._mask = mask | (slots == queries)[None, None]
            self._mask_for = (start, end)
        return self._mask


@dataclass
class AttentionContext:
    """What every layer of one forward pass needs to attend; built once by the model.

    cos, sin: [B or 1, T, 1, head_dim] rotary tables (`RotaryEmbedding`, sign-folded sin).
    doc_ids: [B, T] document index per token when sequences are packed, else None.
    cache: the KV cache when decoding, else None.
    rows: flat indices into B·T of the positions whose outputs are needed (`needed_rows`); the
        feed-forward layers compute only these. None = every position.
    """

    cos: Tensor
    sin: Tensor
    doc_ids: Tensor | None = None
    cache: KVCache | None = None
    rows: Tensor | None = None


def needed_rows(outputs_at: Tensor | None) -> Tensor | None:
    """Flat indices into B·T of the positions the outputs at `outputs_at` [B, T] depend on: with
    causal attention, each row up to its last marked position. None when that is every position.

    In right-padded training batches the rest is the padding after a row's last supervised token
    (~20 % of the vision-adapter batches at `tiny`), which the feed-forward layers then skip."""
    if outputs_at is None:
        return None
    T = outputs_at.shape[1]
    last = torch.where(outputs_at.any(1), T - 1 - outputs_at.flip(1).int().argmax(1), -1)
    keep = torch.arange(T, device=outputs_at.device) <= last[:, None]
    return None if bool(keep.all()) else keep.view(-1).nonzero()[:, 0]


def at_rows(fn: Callable[[Tensor], Tensor], x: Tensor, rows: Tensor | None) -> Tensor:
    """A position-wise `fn` of x [B, T, D] computed at the flat positions `rows` only (all when
    None); the other positions get zeros, which nothing that is needed reads."""
    if rows is None:
        return fn(x)
    flat = x.reshape(-1, x.shape[-1])
    out = fn(flat.index_select(0, rows))
    return out.new_zeros(flat.shape[0], out.shape[-1]).index_copy(0, rows, out).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    """Multi-head self-attention with n_kv_heads key/value heads shared by groups of query heads.

    q, k and v come from one matmul over the concatenated wq/wk/wv weights (the parameters and
    their Meta names stay separate); `fuse()` keeps that concatenation for decoding, where one
    small matmul per token instead of three is what counts.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)
        self.fused: Tensor | None = None

    def fuse(self) -> None:
        """Keep the concatenated q/k/v weight until `unfuse()` (inference only: no gradient)."""
        self.fused = torch.cat([self.wq.weight, self.wk.weight, self.wv.weight]).detach()

    def unfuse(self) -> None:
        self.fused = None

    def forward(self, x: Tensor, ctx: AttentionContext, layer: int) -> Tensor:
        """x [B, T, dim] → [B, T, dim]."""
        B, T, _ = x.shape
        H, K, D = self.n_heads, self.n_kv_heads, self.head_dim
        weight = self.fused if self.fused is not None else torch.cat(
            [self.wq.weight, self.wk.weight, self.wv.weight])
        qkv = F.linear(x, weight).view(B, T, H + 2 * K, D)
        # RoPE on q and k together; tensors stay [B, T, heads, D] and SDPA reads them transposed.
        qk = rotate(qkv[:, :, : H + K], ctx.cos, ctx.sin)
        q, k = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2)
        v = qkv[:, :, H + K:].transpose(1, 2)
        if ctx.cache is not None:
            out = _attend_cached(q, k, v, ctx.cache, layer)
        elif ctx.doc_ids is not None:
            out = _attend_documents(q, k, v, ctx.doc_ids)
        else:
            out = sdpa(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(out.transpose(1, 2).reshape(B, T, H * D))


def repeat_kv(t: Tensor, groups: int) -> Tensor:
    """[B, n_kv, S, hd] → [B, n_kv·groups, S, hd], each KV head serving `groups` query heads."""
    if groups == 1:
        return t
    B, H, S, D = t.shape
    return t[:, :, None].expand(B, H, groups, S, D).reshape(B, H * groups, S, D)


def _sdpa_gqa(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> Tensor:
    """SDPA with k/v shared by groups of query heads (no repeated copies of k and v)."""
    return sdpa(q, k, v, enable_gqa=True, **kwargs)


def _attend_documents(q: Tensor, k: Tensor, v: Tensor, doc_ids: Tensor) -> Tensor:
    """Block-diagonal causal attention over packed documents, one chunk of queries at a time.

    Documents are contiguous runs of equal doc_ids, so a chunk of queries [s, e) only needs keys
    from the earliest document start in the chunk up to e: the mask is at most
    QUERY_CHUNK × T booleans, never T × T.
    """
    B, _, T, _ = q.shape
    starts = document_starts(doc_ids)  # [B, T] index where each token's document begins
    outputs = []
    for s in range(0, T, QUERY_CHUNK):
        e = min(s + QUERY_CHUNK, T)
        lo = int(starts[:, s].min())
        same_doc = doc_ids[:, s:e, None] == doc_ids[:, None, lo:e]
        causal = torch.arange(s, e, device=q.device)[:, None] >= torch.arange(lo, e, device=q.device)
        mask = (same_doc & causal)[:, None]  # [B, 1, e-s, e-lo]
        outputs.append(_sdpa_gqa(q[:, :, s:e], k[:, :, lo:e], v[:, :, lo:e], attn_mask=mask))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


def _attend_cached(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int) -> Tensor:
    """New queries [B, H, T, hd] against every cache slot filled so far (their own included)."""
    T = q.shape[2]
    start = cache.filled
    keys, values = cache.write(layer, k, v)
    end = keys.shape[2]
    if not cache.has_padding:
        if T == 1:
            return _sdpa_gqa(q, keys, values)
        if start == 0:
            return _sdpa_gqa(q, keys, values, is_causal=True)
    mask = cache.attention_mask(start, end)
    return _sdpa_gqa(q, keys, values, attn_mask=mask)


def document_starts(doc_ids: Tensor) -> Tensor:
    """doc_ids [B, T] → [B, T]: the index of the first token of each token's document."""
    T = doc_ids.shape[1]
    index = torch.arange(T, device=doc_ids.device).expand_as(doc_ids)
    boundary = torch.ones_like(doc_ids, dtype=torch.bool)
    boundary[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return torch.where(boundary, index, torch.zeros_like(index)).cummax(dim=1).values


def document_positions(doc_ids: Tensor) -> Tensor:
    """doc_ids [B, T] → position ids [B, T] that restart at 0 with every document."""
    index = torch.arange(doc_ids.shape[1], device=doc_ids.device).expand_as(doc_ids)
    return index - document_starts(doc_ids)


__all__ = ["Attention", "AttentionContext", "KVCache", "repeat_kv", "document_positions", "needed_rows", "at_rows",
           "document_starts", "QUERY_CHUNK"]
