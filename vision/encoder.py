"""The tiled ViT/14 image encoder of Llama 3.2 Vision (llama3-spec §3.1, §3.3).

An image arrives as up to `max_tiles` tiles of `tile_size` pixels plus its aspect-ratio id
(index + 1 into `VisionConfig.aspect_ratios`; 0 marks a padding image). Order of operations,
as in the reference code:

    patchify each tile → + gated pre-tile embedding → prepend class token
    → + (1 − tanh g)·local position + tanh g·tile-aware position → ln_pre
    → local layers over all tiles of an image as one sequence (padding tiles masked),
      keeping the hidden state *entering* each layer in `intermediate_layers`
    → ln_post → + gated post-tile embedding → gated global layers
    → concat(final, intermediates interleaved feature-major) per token

Output: [B, N_img, max_tiles, tokens_per_tile, output_dim]; padding tiles come back as zeros.
Position tables are indexed by aspect-ratio id (the Hugging Face Mllama layout, shape
[n_ratios + 1, max_tiles, …]) so that weights map one-to-one onto that implementation. Unlike
the reference (which only blocks padding→padding pairs), real tokens never attend to padding
tokens, so padding pixels cannot leak into real tiles.
"""

from __future__ import annotations

import math


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from text.attention import sdpa
from vision.config import VisionConfig


class ScalarGate(nn.Module):
    """x · tanh(gate) with a scalar gate initialised to zero (vision keeps its own copy of
    `adapters.gate.TanhGate`: the encoder package depends on nothing else of ours)."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate.tanh()


class SelfAttention(nn.Module):
    """Bias-free multi-head self-attention, no RoPE (positions come from the embeddings)."""

    def __init__(self, width: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, width // n_heads
        self.wq = nn.Linear(width, width, bias=False)
        self.wk = nn.Linear(width, width, bias=False)
        self.wv = nn.Linear(width, width, bias=False)
        self.wo = nn.Linear(width, width, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x [B, S, width], mask [B, 1, S, S] bool (True = may attend) or None → [B, S, width]."""
        B, S, _ = x.shape
        q, k, v = (w(x).view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        out = sdpa(q, k, v, attn_mask=mask)
        return self.wo(out.transpose(1, 2).reshape(B, S, -1))


class MLP(nn.Module):
    """fc2(gelu(fc1 x)), with biases."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-LayerNorm block: x + g_a(attn(ln_1 x)), then h + g_m(mlp(ln_2 h)).

    The gates are modules: `nn.Identity` for local layers, `ScalarGate` for the gated global
    layers (built by `gated_block`), so one branch-free forward serves both.
    """

    def __init__(self, width: int, n_heads: int, mlp_dim: int, eps: float,
                 attn_gate: nn.Module | None = None, mlp_gate: nn.Module | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = SelfAttention(width, n_heads)
        self.attn_gate = attn_gate or nn.Identity()
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, mlp_dim)
        self.mlp_gate = mlp_gate or nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = x + self.attn_gate(self.attn(self.ln_1(x), mask))
        return h + self.mlp_gate(self.mlp(self.ln_2(h)))


def gated_block(width: int, n_heads: int, mlp_dim: int, eps: float) -> EncoderBlock:
    """A global layer: tanh gates (initialised to 0, i.e. identity) on attention and MLP."""
    return EncoderBlock(width, n_heads, mlp_dim, eps, ScalarGate(), ScalarGate())


class TileEmbedding(nn.Module):
    """Gated per-tile embedding looked up by aspect-ratio id: x + tanh(g)·E[id] with E[id] of shape
    [max_tiles, n_tokens, width] (n_tokens = 1 for the pre-/post-tile embeddings)."""

    def __init__(self, n_ratio_ids: int, max_tiles: int, n_tokens: int, width: int):
        super().__init__()
        self.shape = (max_tiles, n_tokens, width)
        self.embedding = nn.Embedding(n_ratio_ids, max_tiles * n_tokens * width)
        self.gate = nn.Parameter(torch.zeros(1))
        nn.init.normal_(self.embedding.weight, std=width ** -0.5)

    def forward(self, x: Tensor, ratio_ids: Tensor) -> Tensor:
        """x [M, max_tiles, tokens, width], ratio_ids [M] → same shape."""
        return x + self.gate.tanh() * self.embedding(ratio_ids).view(-1, *self.shape)


def sincos_2d(grid: int, width: int) -> Tensor:
    """[1 + grid², width] fixed 2-D sine-cosine positions (MAE), zero for the class token: half the
    channels encode the patch's row, half its column, each at `width // 4` frequencies."""
    quarter = width // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    parts = [f(a.flatten()[:, None] * freqs) for a in (rows, cols) for f in (torch.sin, torch.cos)]
    table = torch.zeros(1 + grid * grid, width)
    table[1:, : 4 * quarter] = torch.cat(parts, dim=1)
    return table


class PositionEmbedding(nn.Module):
    """Per-token positions: (1 − tanh g)·local[tok] + tanh g·tile_aware[id, tile, tok]; g starts at 0.

    The local table starts from 2-D sine-cosine positions rather than small random vectors: every
    token then carries its row and column in its own vector, which the cross-attention layers
    need (their keys get no other position signal) and which a contrastive objective alone, with
    captions that rarely hinge on where things are, does not teach a small encoder."""

    def __init__(self, n_ratio_ids: int, max_tiles: int, n_tokens: int, width: int):
        super().__init__()
        grid = math.isqrt(n_tokens - 1)
        init = (sincos_2d(grid, width) if grid * grid == n_tokens - 1
                else torch.randn(n_tokens, width) * width ** -0.5)
        self.embedding = nn.Parameter(init)
        self.tile_embedding = TileEmbedding(n_ratio_ids, max_tiles, n_tokens, width)

    def forward(self, x: Tensor, ratio_ids: Tensor) -> Tensor:
        g = self.tile_embedding.gate.tanh()
        return self.tile_embedding(x + (1 - g) * self.embedding, ratio_ids)


class VisionEncoder(nn.Module):
    """Tiled ViT with multi-layer features and gated global layers. Build with `build_encoder`."""

    def __init__(self, config: VisionConfig, layers: nn.ModuleList, global_layers: nn.ModuleList):
        super().__init__()
        c = self.config = config
        n_ids = len(c.aspect_ratios) + 1
        self.patch_embed = nn.Conv2d(3, c.width, c.patch_size, stride=c.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(c.width) * c.width ** -0.5)
        self.pre_tile_embedding = TileEmbedding(n_ids, c.max_tiles, 1, c.width)
        self.position_embedding = PositionEmbedding(n_ids, c.max_tiles, c.tokens_per_tile, c.width)
        self.ln_pre = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.layers = layers
        self.ln_post = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.post_tile_embedding = TileEmbedding(n_ids, c.max_tiles, 1, c.width)
        self.global_layers = global_layers
        tiles = torch.tensor([0] + [r * cols for r, cols in c.aspect_ratios])
        self.register_buffer("tiles_per_ratio", tiles, persistent=False)

    def tile_mask(self, ratio_ids: Tensor) -> Tensor:
        """ratio_ids [...] → [..., max_tiles] bool, True for real tiles."""
        tiles = torch.arange(self.config.max_tiles, device=ratio_ids.device)
        return tiles < self.tiles_per_ratio[ratio_ids][..., None]

    def forward(self, images: Tensor, ratio_ids: Tensor) -> Tensor:
        """images [B, N, max_tiles, 3, tile, tile], ratio_ids [B, N] (0 = padding image)
        → features [B, N, max_tiles, tokens_per_tile, output_dim], zero for padding tiles and images."""
        c = self.config
        real = ratio_ids > 0
        if not bool(real.all()):  # padding images (rows with fewer images, packed rows) cost nothing
            if not bool(real.any()):
                return images.new_zeros(*ratio_ids.shape, c.max_tiles, c.tokens_per_tile, c.output_dim)
            features = self.forward(images[real][:, None], ratio_ids[real][:, None])  # [M, 1, …]
            out = features.new_zeros(*ratio_ids.shape, *features.shape[2:])
            out[real] = features[:, 0]
            return out
        B, N, T = images.shape[:3]
        ids = ratio_ids.reshape(B * N)
        x = self.patch_embed(images.reshape(B * N * T, *images.shape[3:]))
        x = x.flatten(2).transpose(1, 2).reshape(B * N, T, c.patches_per_tile, c.width)
        x = self.pre_tile_embedding(x, ids)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(B * N, T, 1, c.width), x], dim=2)
        x = self.ln_pre(self.position_embedding(x, ids))
        x = x.reshape(B * N, T * c.tokens_per_tile, c.width)

        tile_mask = self.tile_mask(ids)  # [BN, T]
        mask = _padding_mask(tile_mask.repeat_interleave(c.tokens_per_tile, dim=1))
        features = []
        for i, layer in enumerate(self.layers):
            if i in c.intermediate_layers:
                features.append(x)
            x = layer(x, mask)
        x = self.ln_post(x).view(B * N, T, c.tokens_per_tile, c.width)
        x = self.post_tile_embedding(x, ids).view(B * N, T * c.tokens_per_tile, c.width)
        for layer in self.global_layers:
            x = layer(x, mask)
        # Intermediates are stacked on a last axis and flattened (feature d of the k-th kept layer
        # at d·n + k), the reference layout, so projection weights carry over unchanged.
        if features:
            x = torch.cat([x, torch.stack(features, dim=-1).flatten(-2)], dim=-1)
        out = x.view(B, N, T, c.tokens_per_tile, c.output_dim)
        return out * tile_mask.view(B, N, T, 1, 1).to(out.dtype)


def _padding_mask(valid: Tensor) -> Tensor | None:
    """valid [M, S] → [M, 1, S, S] bool: every query sees the valid keys only; a padding query
    (whose output is discarded) sees everything, so that no softmax row is empty."""
    if bool(valid.all()):
        return None
    return (valid[:, None, :] | ~valid[:, :, None])[:, None]


def build_encoder(config: VisionConfig) -> VisionEncoder:
    """Assemble the local and gated global layers of `config` into a `VisionEncoder`."""
    c = config
    local = nn.ModuleList(EncoderBlock(c.width, c.n_heads, c.mlp_dim, c.norm_eps)
                          for _ in range(c.n_layers))
    gated = nn.ModuleList(gated_block(c.width, c.n_heads, c.mlp_dim, c.norm_eps)
                          for _ in range(c.n_global_layers))
    return VisionEncoder(c, local, gated)


def parameter_counts(encoder: VisionEncoder) -> dict[str, int]:
    """{"local": the ViT proper (patchify, class token, local positions, local layers, norms),
    "gated": global layers + tile embeddings, "total"} — works on the meta device."""
    total = sum(p.numel() for p in encoder.parameters())
    gated = sum(p.numel() for p in encoder.global_layers.parameters())
    gated += sum(p.numel() for m in (encoder.pre_tile_embedding, encoder.post_tile_embedding,
                                     encoder.position_embedding.tile_embedding)
                 for p in m.parameters())
    return {"local": total - gated, "gated": gated, "total": total}


__all__ = ["VisionEncoder", "EncoderBlock", "ScalarGate", "build_encoder", "parameter_counts",
           "gated_block"]
