"""Fusion wrapper: the frozen Llama 3 LM plus image encoder, projection and gated cross-attention
blocks (llama3-spec §3.2, §7; llama-models `CrossAttentionTransformer`).

    fused = build_fusion_model(lm, create_vision_config("tiny"))   # lm: text.Transformer
    fused.load_text_state_dict(lm_state)     # raises unless exactly the adapter keys are missing
    logits = fused(tokens, images=pixels, ratio_ids=ids)            # [B, T, V]
    model = from_spec(fused.spec())   # arch "llama3-vision": text + vision + fusion configs

- The LM's modules sit at the top level under their own names (`tok_embeddings`, `layers.N.…`,
  `norm`, `output`), so a text checkpoint loads unchanged; adapter modules live under
  `learnable_embedding`, `vision_encoder`, `vision_projection`, `cross_attention_layers.N`.
- A cross-attention block runs *before* LM layer i for each i of `fusion_schedule` (llama-models
  `_init_fusion_schedule`: [3, 7, …, 31] for 8 blocks on 32 layers).
- Token ids V … V+7 (V = LM vocab; `<|image|>` = V) index 8 learnable rows; ids < V use the LM's
  table (frozen by policy). The output head keeps V rows.
- Without images (and no cached ones) every cross-attention block is skipped. With images,
  image K/V are computed once per prompt and kept in the `FusionCache` for decoding.
- Text→image mask (llama-models `create_vision_mask`): text after an `<|image|>` token attends
  to that image until the next run of image tokens; consecutive image tokens are all attended by
  the text that follows them; padding tiles are never attended. In packed rows (`doc_ids`) a
  token attends only the images of its own document.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from adapters.cross_attention import CrossAttentionBlock, ImageAttention
from adapters.projection import VisionProjection
from adapters.text_loading import adapter_keys, adapter_params, load_text_state_dict
from text.attention import KVCache
from text.config import TextConfig
from text.model import Transformer, logits_where, tie_output_to_embeddings
from vision.config import VisionConfig
from vision.encoder import VisionEncoder, build_encoder

FUSION_MODULES = ("learnable_embedding", "vision_encoder", "vision_projection",
                  "cross_attention_layers")
"""Top-level submodules that belong to the adapter (everything else is the LM)."""


@dataclass(kw_only=True, frozen=True)
class FusionConfig:
    """How the image adapter attaches to the LM."""

    cross_attention_every: int = 4
    """One cross-attention block per this many LM layers (8 on the 32-layer 8B, 20 on 70B)."""
    n_new_tokens: int = 8
    """Learnable embedding rows for ids V … V+n-1 (`<|image|>`, `<|video|>`, speech, reserved)."""

    def n_cross_layers(self, n_layers: int) -> int:
        return max(1, n_layers // self.cross_attention_every)


def fusion_schedule(n_layers: int, n_cross: int) -> list[int]:
    """LM layer indices that get a cross-attention block before them: every k-th layer counted
    from the last, k = ceil(n_layers / n_cross) (llama-models `_init_fusion_schedule`)."""
    k = math.ceil(n_layers / n_cross)
    return list(range(n_layers))[::-1][::k][:n_cross][::-1]


@dataclass
class ImageSpans:
    """Running state of the text→image mask, carried across decoding steps.

    seen [B]: image tokens so far; runs [B]: runs of consecutive image tokens so far;
    prev_is_image [B]: whether the last token was an image token;
    image_run [B, N]: the run each image's token belongs to (-1 until seen).
    """

    seen: Tensor
    runs: Tensor
    prev_is_image: Tensor
    image_run: Tensor

    @classmethod
    def start(cls, batch: int, n_images: int, device: torch.device) -> "ImageSpans":
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return cls(zeros, zeros, zeros.bool(),
                   torch.full((batch, n_images), -1, dtype=torch.long, device=device))


def image_attendance(tokens: Tensor, image_token_id: int,
                     spans: ImageSpans) -> tuple[Tensor, ImageSpans]:
    """tokens [B, T] → (attend [B, T, N] bool: token t may attend image n, updated spans).

    Image n is the n-th `<|image|>` of its row. Token t attends image n when t is at or after
    that image token and no new run of image tokens has started since its own run. Image
    tokens beyond the N images given attend nothing.
    """
    N = spans.image_run.shape[1]
    is_image = tokens == image_token_id
    prev = torch.cat([spans.prev_is_image[:, None], is_image[:, :-1]], dim=1)
    runs = spans.runs[:, None] + (is_image & ~prev).cumsum(1)  # [B, T]
    seen = spans.seen[:, None] + is_image.cumsum(1)  # [B, T]
    index = torch.arange(N, device=tokens.device)
    hit = is_image[:, :, None] & (seen[:, :, None] == index + 1)  # [B, T, N]: image n's token
    image_run = torch.where(hit.any(1), (runs[:, :, None] * hit).sum(1), spans.image_run)
    attend = (seen[:, :, None] > index) & (runs[:, :, None] == image_run[:, None, :])
    new = ImageSpans(seen[:, -1], runs[:, -1], is_image[:, -1], image_run)
    return attend, new


def image_documents(tokens: Tensor, doc_ids: Tensor, image_token_id: int, n_images: int) -> Tensor:
    """[B, N]: the document (`doc_ids` [B, T]) of each row's n-th `<|image|>` token; -2 for
    images that have no token in `tokens` (never equal to a document id or padding's -1)."""
    B = tokens.shape[0]
    is_image = tokens == image_token_id
    slot = torch.where(is_image, is_image.cumsum(1) - 1, n_images).clamp(max=n_images)
    docs = torch.full((B, n_images + 1), -2, dtype=doc_ids.dtype, device=doc_ids.device)
    return docs.scatter(1, slot, torch.where(is_image, doc_ids, -2))[:, :n_images]


@dataclass
class FusionCache:
    """Decoding state: the LM's self-attention KV cache plus, once a prompt had images, the
    per-block image K/V, which tiles are real, and the running text→image spans."""

    text: KVCache
    image_kv: dict[int, tuple[Tensor, Tensor]] | None = None
    tile_valid: Tensor | None = None
    spans: ImageSpans | None = None

    def mark_padding(self, pad: Tensor) -> None:
        """Left-padding slots of the prompt, as `text.attention.KVCache.mark_padding`."""
        self.text.mark_padding(pad)

    @property
    def filled(self) -> int:
        return self.text.filled


class FusionModel(nn.Module):
    """The text LM with image adapters inserted on a schedule. Build with `build_fusion_model`."""

    def __init__(self, lm: Transformer, encoder: VisionEncoder, projection: VisionProjection,
                 blocks: dict[int, CrossAttentionBlock], fusion: FusionConfig = FusionConfig()):
        super().__init__()
        self.config = lm.config
        self.fusion_config = fusion
        # The LM is kept unregistered (its modules are registered below under their own names),
        # so state-dict keys stay the LM's; it is held for `attention_context` and `new_cache`.
        object.__setattr__(self, "text_model", lm)
        self.tok_embeddings, self.layers, self.norm, self.output = (
            lm.tok_embeddings, lm.layers, lm.norm, lm.output)
        self.rope = lm.rope
        if lm.config.tie_embeddings:  # store the shared table once, exactly as the LM does
            tie_output_to_embeddings(self)
        self.learnable_embedding = nn.Embedding(fusion.n_new_tokens, lm.config.dim)
        nn.init.normal_(self.learnable_embedding.weight, std=0.02)
        self.vision_encoder = encoder
        self.vision_projection = projection
        self.cross_attention_layers = nn.ModuleDict({str(i): b for i, b in sorted(blocks.items())})
        self.schedule = sorted(blocks)
        self.image_token_id = lm.config.vocab_size

    # --- parameters and checkpoints -------------------------------------------------------
    def spec(self) -> dict:
        """How to rebuild this model (meta.json `model`; `from_spec` is the inverse)."""
        return {"arch": "llama3-vision", "text": self.config.to_dict(),
                "vision": self.vision_encoder.config.to_dict(),
                "fusion": dataclasses.asdict(self.fusion_config)}

    def fusion_params(self) -> dict[str, nn.Parameter]:
        """The adapter's own parameters by name (encoder, projection, blocks, new token rows)."""
        return adapter_params(self, FUSION_MODULES)

    def adapter_state_keys(self) -> set[str]:
        return adapter_keys(self, FUSION_MODULES)

    def load_text_state_dict(self, state: dict[str, Tensor]) -> list[str]:
        """Load a text-LM state dict; raise unless exactly the adapter keys are missing."""
        return load_text_state_dict(self, state, FUSION_MODULES)

    # --- forward --------------------------------------------------------------------------
    def embed(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] → [B, T, dim]; ids ≥ V read the learnable rows."""
        V = self.image_token_id
        new = tokens >= V
        base = self.tok_embeddings(tokens.masked_fill(new, 0))
        extra = self.learnable_embedding((tokens - V).clamp(min=0))
        return torch.where(new[..., None], extra, base)

    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype | None = None) -> FusionCache:
        return FusionCache(self.text_model.new_cache(batch, max_len, dtype=dtype))

    def attach_images(self, cache: FusionCache, images: Tensor, ratio_ids: Tensor) -> None:
        """Encode the prompt's images into an empty cache, so that a text-only decoding loop
        (e.g. `text.generate`) attends them from the first token on."""
        if cache.text.filled:
            raise ValueError("attach images before the prompt is run through the cache")
        cache.image_kv = self.image_kv(images, ratio_ids)
        cache.tile_valid = self.vision_encoder.tile_mask(ratio_ids)
        cache.spans = ImageSpans.start(ratio_ids.shape[0], ratio_ids.shape[1], ratio_ids.device)

    def forward(self, tokens: Tensor, *, images: Tensor | None = None,
                ratio_ids: Tensor | None = None, positions: Tensor | None = None,
                doc_ids: Tensor | None = None, cache: FusionCache | None = None,
                logits_at: Tensor | None = None) -> Tensor:
        """Logits [B, T, V] ([n, V] at the positions `logits_at` [B, T] marks, as in `Transformer`).

        tokens [B, T] (ids up to V+7); images [B, N, max_tiles, 3, t, t] and ratio_ids [B, N]
        (0 = padding image) for the prompt; decoding steps pass neither and reuse the cache.
        positions [B, T]: explicit RoPE positions as in `text.Transformer.forward`.
        doc_ids [B, T]: packed documents (`train.stages.chat_data.pack_rows`), each with its own
        images in order; attention, positions and image attendance stay within a document.
        """
        return logits_where(self.output, self.hidden_states(tokens, images=images, ratio_ids=ratio_ids,
                                                            positions=positions, doc_ids=doc_ids, cache=cache,
                                                            outputs_at=logits_at), logits_at)

    def hidden_states(self, tokens: Tensor, *, images: Tensor | None = None,
                      ratio_ids: Tensor | None = None, positions: Tensor | None = None,
                      doc_ids: Tensor | None = None, cache: FusionCache | None = None,
                      embeds: Tensor | None = None, outputs_at: Tensor | None = None) -> Tensor:
        """The final-normed hidden states [B, T, dim]. `embeds` [B, T, dim] replaces the token
        embeddings (a wrapper that splices speech into them, `adapters.multimodal`); with
        `outputs_at` [B, T] only those positions' states are exact (`text.attention.needed_rows`)."""
        h = self.embed(tokens) if embeds is None else embeds
        text_cache = cache.text if cache is not None else None
        ctx = self.text_model.attention_context(h, doc_ids=doc_ids, positions=positions, cache=text_cache,
                                                outputs_at=outputs_at)
        image = self.image_attention(tokens, images, ratio_ids, cache, h.dtype, doc_ids)
        for i, layer in enumerate(self.layers):
            if image is not None and i in image:
                h = self.cross_attention_layers[str(i)](h, image[i], ctx.rows)
            h = layer(h, ctx)
        if text_cache is not None:
            text_cache.advance(h.shape[1])
        return self.norm(h)

    def image_kv(self, images: Tensor, ratio_ids: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
        """Encode and project the images once; K/V of every block, each [B, n_kv, S, head_dim]."""
        image_tokens = self.vision_projection(self.vision_encoder(images, ratio_ids))
        return {i: self.cross_attention_layers[str(i)].attention.image_kv(image_tokens)
                for i in self.schedule}

    def image_attention(self, tokens: Tensor, images: Tensor | None, ratio_ids: Tensor | None,
                        cache: FusionCache | None, dtype: torch.dtype,
                        doc_ids: Tensor | None = None) -> dict[int, ImageAttention] | None:
        """Per-block K/V and masks for this pass, or None when there is no image to attend."""
        if images is not None:
            kv = self.image_kv(images, ratio_ids)
            tile_valid = self.vision_encoder.tile_mask(ratio_ids)  # [B, N, tiles]
            spans = ImageSpans.start(tokens.shape[0], ratio_ids.shape[1], tokens.device)
        elif cache is not None and cache.image_kv is not None:
            kv, tile_valid, spans = cache.image_kv, cache.tile_valid, cache.spans
        else:
            return None
        attend, spans = image_attendance(tokens, self.image_token_id, spans)
        if doc_ids is not None:
            image_docs = image_documents(tokens, doc_ids, self.image_token_id, attend.shape[-1])
            attend &= doc_ids[:, :, None] == image_docs[:, None, :]
        if cache is not None:
            cache.image_kv, cache.tile_valid, cache.spans = kv, tile_valid, spans
        n_tok = self.vision_encoder.config.tokens_per_tile
        B, T, _ = attend.shape
        mask = (attend[..., None] & tile_valid[:, None]).repeat_interleave(n_tok, dim=-1)
        mask = mask.view(B, T, -1)  # [B, T, S]
        row = mask.any(-1, keepdim=True)
        mask = (mask | ~row)[:, None]
        return {i: ImageAttention(kv[i], mask, row.to(dtype)) for i in self.schedule}


def build_fusion_model(lm: Transformer, vision: VisionConfig,
                       config: FusionConfig = FusionConfig()) -> FusionModel:
    """Wrap `lm` with a fresh encoder for `vision`, a projection and cross-attention blocks on
    the computed schedule; every gate starts at zero, so logits equal the LM's."""
    c = lm.config
    schedule = fusion_schedule(c.n_layers, config.n_cross_layers(c.n_layers))
    blocks = {i: CrossAttentionBlock(c.dim, c.n_heads, c.n_kv_heads, c.ffn_hidden_dim, c.norm_eps)
              for i in schedule}
    for block in blocks.values():
        for m in block.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
    return FusionModel(lm, build_encoder(vision), VisionProjection(vision.output_dim, c.dim),
                       blocks, config)


def from_spec(spec: dict) -> FusionModel:
    """An untrained fused model of the shape `FusionModel.spec()` describes."""
    lm = Transformer(TextConfig.from_dict(spec["text"]))
    return build_fusion_model(lm, VisionConfig.from_dict(spec["vision"]), FusionConfig(**spec["fusion"]))


__all__ = ["FusionConfig", "FusionModel", "FusionCache", "ImageSpans", "FUSION_MODULES",
           "fusion_schedule", "image_attendance", "image_documents", "build_fusion_model", "from_spec"]
