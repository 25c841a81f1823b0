"""Speech enters the frozen LM as token embeddings (llama3-spec §5.4): no cross-attention, and the
LM itself is never changed.

A row of tokens holds each speech span as `<|speech_start|>`, one placeholder per adapter output
frame, `<|speech_end|>` (ids V+2 and V+3 of a vocab-V LM, docs/internals.md). The placeholders'
embeddings are replaced by the adapter outputs; every other position keeps the LM's own token
embedding (ids ≥ V come from `learnable_embedding`, the 8 new rows for ids V…V+7).

    fused = build_speech_fusion(lm, create_config("tiny"))          # lm: text.Transformer
    n = fused.speech_lengths(feat_lengths)                         # placeholders per utterance
    tokens = cat([prompt_ids, speech_span(n[0], V), transcript_ids])
    logits = fused(tokens[None], feats, feat_lengths)              # [1, T, V]

Several spans may share a row and rows may hold none; spans are filled in row-major order by the
utterances of `feats`, in order.

Generation (docs/internals.md "Multimodal models"): `attach_speech(cache, feats, feat_lengths)`
encodes the prompt's audio into a fresh cache, and the prompt's spans read it when the prompt runs:

    generate(fused, [prompt], attach=lambda c: fused.attach_speech(c, feats, feat_lengths))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adapters.speech_adapter import SpeechAdapter, build_speech_adapter
from adapters.text_loading import adapter_keys, adapter_params, load_text_state_dict
from speech.config import ConformerConfig, SpeechAdapterConfig, SpeechConfig
from speech.ctc_probe import CTCProbe
from speech.encoder import ConformerEncoder, build_encoder
from text.attention import KVCache
from text.config import TextConfig
from text.model import Transformer, tie_output_to_embeddings

N_EXTRA_TOKENS = 8
"""New embedding rows for ids V … V+7 (`<|image|>`, `<|video|>`, speech start/end, 4 reserved)."""
SPEECH_START_OFFSET = 2
"""`<|speech_start|>` is id V + 2."""
SPEECH_END_OFFSET = 3
"""`<|speech_end|>` is id V + 3."""
PLACEHOLDER_OFFSET = 4 - 256
"""Placeholders inside a span use `<|finetune_right_pad_id|>` (V − 252); their embeddings are replaced."""


def speech_token_ids(vocab_size: int) -> tuple[int, int]:
    """(`<|speech_start|>`, `<|speech_end|>`) ids for an LM with `vocab_size` rows."""
    return vocab_size + SPEECH_START_OFFSET, vocab_size + SPEECH_END_OFFSET


def speech_span(n_frames: int | Tensor, vocab_size: int) -> Tensor:
    """[n_frames + 2] int64: start token, n_frames placeholders, end token."""
    start, end = speech_token_ids(vocab_size)
    span = torch.full((int(n_frames) + 2,), vocab_size + PLACEHOLDER_OFFSET, dtype=torch.long)
    span[0], span[-1] = start, end
    return span


def speech_positions(tokens: Tensor, vocab_size: int) -> Tensor:
    """[B, T] bool: True strictly between a `<|speech_start|>` and its `<|speech_end|>`."""
    start, end = speech_token_ids(vocab_size)
    depth = (tokens == start).long().cumsum(dim=1) - (tokens == end).long().cumsum(dim=1)
    return (depth > 0) & (tokens != start)


def splice_speech(embeds: Tensor, tokens: Tensor, speech: Tensor, lengths: Tensor,
                  vocab_size: int) -> Tensor:
    """Put the valid frames of speech [N, S, dim] (lengths [N]) into embeds [B, T, dim] at the
    span positions of tokens [B, T], in row-major order. Returns a new tensor."""
    inside = speech_positions(tokens, vocab_size)
    valid = torch.arange(speech.shape[1], device=speech.device)[None, :] < lengths[:, None]
    frames = speech[valid]  # [sum(lengths), dim], utterance by utterance
    if int(inside.sum()) != frames.shape[0]:
        raise ValueError(f"token spans hold {int(inside.sum())} speech positions but the adapter "
                         f"produced {frames.shape[0]} frames (lengths {lengths.tolist()})")
    rows, cols = inside.nonzero(as_tuple=True)
    return embeds.index_put((rows, cols), frames.to(embeds.dtype))


SPEECH_FUSION_MODULES = ("learnable_embedding", "speech_encoder", "speech_adapter", "ctc_head")
"""Top-level submodules that belong to the speech path (everything else is the LM)."""


@dataclass
class SpeechCache:
    """Decoding state: the LM's KV cache plus the prompt's attached speech (adapter outputs
    [N, S, dim] and lengths [N]) until the prompt's spans have consumed it."""

    text: KVCache
    speech: Tensor | None = None
    speech_lengths: Tensor | None = None

    def mark_padding(self, pad: Tensor) -> None:
        """Left-padding slots of the prompt, as `text.attention.KVCache.mark_padding`."""
        self.text.mark_padding(pad)

    @property
    def filled(self) -> int:
        return self.text.filled


class SpeechFusion(nn.Module):
    """Frozen text LM + Conformer encoder + speech adapter: tokens and audio features → logits.

    Laid out like `adapters.fusion.FusionModel`: the LM's modules sit at the top level under
    their own names (`tok_embeddings`, `layers`, `norm`, `output`), so a text checkpoint loads
    unchanged; the speech path lives under `speech_encoder`, `speech_adapter` and
    `learnable_embedding` (rows for ids V … V+7, the same rows the image fusion uses).
    """

    def __init__(self, lm: Transformer, encoder: ConformerEncoder, adapter: SpeechAdapter,
                 ctc_head: CTCProbe | None = None):
        super().__init__()
        self.config = lm.config
        # Unregistered: its modules are registered below under their own names.
        object.__setattr__(self, "text_model", lm)
        self.tok_embeddings, self.layers, self.norm, self.output = (
            lm.tok_embeddings, lm.layers, lm.norm, lm.output)
        self.rope = lm.rope
        if lm.config.tie_embeddings:  # store the shared table once, exactly as the LM does
            tie_output_to_embeddings(self)
        self.learnable_embedding = nn.Embedding(N_EXTRA_TOKENS, lm.config.dim)
        nn.init.normal_(self.learnable_embedding.weight, std=0.02)  # the LM's embedding init
        self.speech_encoder, self.speech_adapter = encoder, adapter
        # Optional auxiliary character CTC head on the encoder frames (training aid only).
        self.ctc_head = ctc_head
        self.vocab_size = lm.config.vocab_size

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model (meta.json `model`; `from_spec` is the inverse)."""
        speech = {"encoder": self.speech_encoder.config, "adapter": self.speech_adapter.config}
        return {"arch": "llama3-speech", "text": self.config.to_dict(),
                "speech": {k: dataclasses.asdict(v) for k, v in speech.items()},
                "ctc_head": self.ctc_head is not None,
                "ctc_upsample": self.ctc_head.upsample if self.ctc_head is not None else 1}

    # --- parameters and checkpoints -------------------------------------------------------
    def fusion_params(self) -> dict[str, nn.Parameter]:
        """The speech path's own parameters by name: encoder, adapter and the new token rows
        (what the `speech-adapter` stage trains; the LM stays frozen)."""
        return adapter_params(self, SPEECH_FUSION_MODULES)

    def adapter_state_keys(self) -> set[str]:
        return adapter_keys(self, SPEECH_FUSION_MODULES)

    def load_text_state_dict(self, state: dict[str, Tensor]) -> list[str]:
        """Load a text-LM state dict; raise unless exactly the adapter keys are missing."""
        return load_text_state_dict(self, state, SPEECH_FUSION_MODULES)

    # --- forward --------------------------------------------------------------------------
    def speech_lengths(self, feat_lengths: Tensor) -> Tensor:
        """Adapter tokens (placeholders to reserve) for utterances of `feat_lengths` log-mel frames."""
        return self.speech_adapter.output_lengths(self.speech_encoder.output_lengths(feat_lengths))

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """tokens [B, T] (ids < V + 8) → [B, T, dim]; ids < V use the LM's own table unchanged."""
        extra = tokens >= self.vocab_size
        text = self.tok_embeddings(tokens.masked_fill(extra, 0))
        new = self.learnable_embedding((tokens - self.vocab_size).clamp(0, N_EXTRA_TOKENS - 1))
        return torch.where(extra[..., None], new, text)

    def encode_speech(self, feats: Tensor, feat_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Log-mel [N, T, n_mels] → adapter outputs [N, S, lm_dim] and lengths [N]."""
        return self.speech_adapter(*self.speech_encoder(feats, feat_lengths))

    def embed(self, tokens: Tensor, speech: Tensor, speech_lengths: Tensor) -> Tensor:
        """The LM input embeddings [B, T, dim] with adapter outputs spliced into the spans."""
        return splice_speech(self.embed_tokens(tokens), tokens, speech, speech_lengths, self.vocab_size)

    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype | None = None) -> SpeechCache:
        """An empty cache for `batch` rows of up to `max_len` tokens (speech is attached separately)."""
        return SpeechCache(self.text_model.new_cache(batch, max_len, dtype=dtype))

    def attach_speech(self, cache: SpeechCache, feats: Tensor, feat_lengths: Tensor) -> None:
        """Encode the prompt's audio (log-mel [N, T, n_mels], lengths [N]) into an empty cache; the
        prompt's spans, `speech_span(n_i, V)` with n = `speech_lengths(feat_lengths)`, receive it."""
        if cache.filled:
            raise ValueError("attach speech before the prompt is run through the cache")
        cache.speech, cache.speech_lengths = self.encode_speech(feats, feat_lengths)

    def forward(self, tokens: Tensor, feats: Tensor | None = None, feat_lengths: Tensor | None = None, *,
                positions: Tensor | None = None, cache: SpeechCache | None = None) -> Tensor:
        """tokens [B, T] with speech spans, log-mel [N, T_a, n_mels] + lengths [N] → logits [B, T, V].

        Without `feats` the spans read the speech attached to `cache` (generation)."""
        return self.output(self.hidden_states(tokens, feats, feat_lengths, positions=positions, cache=cache))

    def hidden_states(self, tokens: Tensor, feats: Tensor | None = None, feat_lengths: Tensor | None = None,
                      *, positions: Tensor | None = None, cache: SpeechCache | None = None) -> Tensor:
        """The final-normed hidden states [B, T, dim] that `output` maps to logits."""
        embeds = self.embed_tokens(tokens)
        if feats is not None:
            embeds = splice_speech(embeds, tokens, *self.encode_speech(feats, feat_lengths), self.vocab_size)
        elif cache is not None and cache.speech is not None:
            embeds = splice_speech(embeds, tokens, cache.speech, cache.speech_lengths, self.vocab_size)
            cache.speech = cache.speech_lengths = None  # consumed by the prompt
        elif bool(speech_positions(tokens, self.vocab_size).any()):
            raise ValueError("tokens hold a speech span but no audio was given (feats or attach_speech)")
        return self.text_model.hidden_states(embeds=embeds, positions=positions,
                                             cache=cache.text if cache is not None else None)


def build_speech_fusion(lm: Transformer, config: SpeechConfig, *, ctc_head: bool = False,
                        ctc_upsample: int = 1) -> SpeechFusion:
    """Wrap `lm` with a fresh encoder and adapter for the speech preset `config` (and, with
    `ctc_head`, a linear character-CTC head on the encoder frames, `ctc_upsample` steps per frame)."""
    encoder = build_encoder(config.encoder)
    adapter = build_speech_adapter(config.adapter, enc_dim=config.encoder.dim, lm_dim=lm.config.dim)
    head = CTCProbe(config.encoder.dim, upsample=ctc_upsample) if ctc_head else None
    return SpeechFusion(lm, encoder, adapter, head)


def from_spec(spec: dict[str, Any]) -> SpeechFusion:
    """An untrained speech fusion of the shape `SpeechFusion.spec()` describes."""
    lm = Transformer(TextConfig.from_dict(spec["text"]))
    speech = SpeechConfig(encoder=ConformerConfig(**spec["speech"]["encoder"]),
                          adapter=SpeechAdapterConfig(**spec["speech"]["adapter"]))
    return build_speech_fusion(lm, speech, ctc_head=bool(spec.get("ctc_head", False)),
                               ctc_upsample=int(spec.get("ctc_upsample", 1)))


__all__ = ["N_EXTRA_TOKENS", "SPEECH_FUSION_MODULES", "SPEECH_START_OFFSET", "SPEECH_END_OFFSET",
           "speech_token_ids", "speech_span", "speech_positions", "splice_speech", "SpeechCache",
           "SpeechFusion", "build_speech_fusion", "from_spec"]
