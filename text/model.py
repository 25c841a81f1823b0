"""The dense Llama 3 decoder (llama3-spec §1.1): pre-norm RMSNorm blocks of GQA self-attention
with RoPE and a SwiGLU FFN, no biases, untied embeddings by default.

State-dict keys follow Meta's reference layout (`tok_embeddings`, `layers.N.attention.wq`,
`layers.N.feed_forward.w1`, `norm`, `output`), so adapters and converters can name them. A model
with tied embeddings stores its one table once, as `tok_embeddings.weight`, and re-ties it on load.

    model = Transformer(create_config("tiny"))
    logits = model(tokens)                        # [B, T] → [B, T, vocab]
    logits = model(tokens, doc_ids=doc_ids)       # packed documents never attend to each other
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text.attention import Attention, AttentionContext, KVCache, at_rows, document_positions, needed_rows
from text.config import TextConfig
from text.rope import RotaryEmbedding


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32, cast back, then scaled (weights start at one)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Spelled out rather than F.rms_norm: same result, and its CPU backward is ~1.5× faster.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.type_as(x)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) ⊙ w3 x).

    While decoding, `fuse()` keeps w1 and w3 concatenated so that they are one matmul per token.
    Training keeps them apart: at batch × sequence rows the fused product's strided halves make
    the elementwise work and its backward slower than the second matmul call saves.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.fused: Tensor | None = None

    def fuse(self) -> None:
        """Keep the concatenated w1/w3 weight until `unfuse()` (inference only: no gradient)."""
        self.fused = torch.cat([self.w1.weight, self.w3.weight]).detach()

    def unfuse(self) -> None:
        self.fused = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fused is not None:
            gate, up = F.linear(x, self.fused).chunk(2, dim=-1)
        else:
            gate, up = self.w1(x), self.w3(x)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    """x + attn(norm(x)), then h + ffn(norm(h))."""

    def __init__(self, config: TextConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config.dim, config.n_heads, config.n_kv_heads)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config.dim, config.ffn_hidden_dim)

    def forward(self, x: Tensor, ctx: AttentionContext) -> Tensor:
        h = x + self.attention(self.attention_norm(x), ctx, self.layer_id)
        return h + at_rows(lambda r: self.feed_forward(self.ffn_norm(r)), h, ctx.rows)


def logits_where(output: nn.Module, hidden: Tensor, at: Tensor | None) -> Tensor:
    """output(hidden) [B, T, vocab], or [n, vocab] at the n positions where `at` [B, T] is True."""
    return output(hidden if at is None else hidden[at])


class Transformer(nn.Module):
    """The Llama 3 language model. Build on the meta device for size accounting:
    `with torch.device("meta"): Transformer(create_config("405B"))` allocates nothing."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            tie_output_to_embeddings(self)
        self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta,
                                    config.rope_scaling)
        self.reset_parameters()

    def spec(self) -> dict:
        """How to rebuild this model (meta.json `model`; `from_spec` is the inverse)."""
        return {"arch": "llama3", "config": self.config.to_dict()}

    def reset_parameters(self, std: float = 0.02) -> None:
        """Normal(0, std) weights; residual output projections scaled by 1/sqrt(2·n_layers)."""
        out_std = std / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
                nn.init.normal_(p, std=out_std)
            else:
                nn.init.normal_(p, std=std)
        if self.rope.cos.device.type != "meta":
            self.rope.reset_tables()

    def forward(
        self,
        tokens: Tensor | None = None,
        *,
        embeds: Tensor | None = None,
        doc_ids: Tensor | None = None,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        logits_at: Tensor | None = None,
    ) -> Tensor:
        """Logits [B, T, vocab] for tokens [B, T] (or input embeddings [B, T, dim]).

        doc_ids [B, T]: packed-document ids; attention stays within a document and positions
            restart per document.
        positions [B, T]: explicit RoPE positions (left-padded generation); default 0..T-1,
            offset by the cache's fill when decoding.
        logits_at [B, T] bool: return logits [n, vocab] at these positions only (the supervised
            ones of a loss), sparing the vocabulary-wide projection everywhere else, and the
            feed-forward layers every position after a row's last one (`needed_rows`).
        """
        return logits_where(self.output, self.hidden_states(tokens, embeds=embeds, doc_ids=doc_ids,
                                                            positions=positions, cache=cache, outputs_at=logits_at),
                            logits_at)

    def hidden_states(self, tokens: Tensor | None = None, *, embeds: Tensor | None = None,
                      doc_ids: Tensor | None = None, positions: Tensor | None = None,
                      cache: KVCache | None = None, outputs_at: Tensor | None = None) -> Tensor:
        """The final-normed hidden states [B, T, dim] that `output` maps to logits; with
        `outputs_at` [B, T] only those positions' states are exact (`needed_rows`)."""
        h = self.tok_embeddings(tokens) if embeds is None else embeds
        ctx = self.attention_context(h, doc_ids=doc_ids, positions=positions, cache=cache, outputs_at=outputs_at)
        for layer in self.layers:
            h = layer(h, ctx)
        if cache is not None:
            cache.advance(h.shape[1])
        return self.norm(h)

    def attention_context(self, h: Tensor, *, doc_ids: Tensor | None = None,
                          positions: Tensor | None = None, cache: KVCache | None = None,
                          outputs_at: Tensor | None = None) -> AttentionContext:
        """Positions, rotary tables, masking and the needed rows (of `outputs_at`, the positions
        whose outputs will be read) for one pass over h [B, T, dim]."""
        T = h.shape[1]
        if doc_ids is not None:
            if positions is None:
                positions = document_positions(doc_ids)
            if bool((doc_ids == doc_ids[:, :1]).all()):
                doc_ids = None  # one document per row: plain causal attention is the same and faster
        dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
        start = cache.filled if cache is not None else 0
        cos, sin = self.rope(positions, start, T, dtype)
        return AttentionContext(cos=cos, sin=sin, doc_ids=doc_ids, cache=cache, rows=needed_rows(outputs_at))

    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for `batch` rows of up to `max_len` tokens."""
        c = self.config
        return KVCache(c.n_layers, batch, c.n_kv_heads, max_len, c.head_dim,
                       dtype=dtype or self.output.weight.dtype, device=self.output.weight.device)


def tie_output_to_embeddings(module: nn.Module) -> None:
    """Share `module.output.weight` with `module.tok_embeddings.weight`, and keep it shared across
    state dicts: saved once (as the embedding), re-tied on load. Also used by wrappers that expose
    the LM's modules under the same names (adapters/fusion.py)."""
    module.output.weight = module.tok_embeddings.weight
    module.register_state_dict_post_hook(_drop_tied_output)
    module.register_load_state_dict_post_hook(_retie_output)


def _drop_tied_output(module: nn.Module, state: dict, prefix: str, _meta) -> None:
    """A tied model stores its one table once, as `tok_embeddings.weight` (safetensors refuses
    two names for one tensor, and a reload must not untie them)."""
    state.pop(prefix + "output.weight", None)


def _retie_output(module: nn.Module, incompatible) -> None:
    """After loading a tied model (whose state has no `output.weight`): share the table again —
    `load_state_dict(assign=True)` replaced the embedding's parameter — and do not report the
    output as missing."""
    module.output.weight = module.tok_embeddings.weight
    if "output.weight" in incompatible.missing_keys:
        incompatible.missing_keys.remove("output.weight")


@contextmanager
def fused_projections(model: nn.Module) -> Iterator[None]:
    """Within the block, every Attention and FeedForward of `model` multiplies by pre-concatenated
    q/k/v and w1/w3 weights instead of concatenating them on each call (inference only).

    Decoding one token at a time is bound by per-call overhead at small sizes, not FLOPs; this
    costs one extra copy of those weights for the duration.
    """
    modules = [m for m in model.modules() if isinstance(m, (Attention, FeedForward))]
    for m in modules:
        m.fuse()
    try:
        yield
    finally:
        for m in modules:
            m.unfuse()


def from_spec(spec: dict) -> Transformer:
    """An untrained LM of the shape `Transformer.spec()` describes."""
    return Transformer(TextConfig.from_dict(spec["config"]))


__all__ = ["RMSNorm", "FeedForward", "TransformerBlock", "Transformer", "fused_projections",
           "tie_output_to_embeddings", "from_spec"]
