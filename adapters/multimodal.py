"""The one model with every component: the frozen LM, the image path, the video path and the
speech path (llama3-spec §3–§5). What `herd chat` and the demo's `final` checkpoint use.

    model = assemble(video_model, speech_model)    # both trained around the same frozen LM
    logits = model(tokens, images=…, video=…, feats=…, feat_lengths=…)

Images and video enter through gated cross-attention (`VideoFusionModel`); speech enters as token
embeddings between `<|speech_start|>` and `<|speech_end|>` (`adapters.speech_fusion`). The stages
train each path separately while the LM stays frozen, so assembling them is exact: the LM tensors
of both parents must be identical (checked), the image/video tensors come from the video model,
the Conformer and speech adapter from the speech model, and of the 8 learnable token rows,
`<|speech_start|>`/`<|speech_end|>` come from the speech model and the rest from the video model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adapters.speech_adapter import build_speech_adapter
from adapters.speech_fusion import (SPEECH_END_OFFSET, SPEECH_START_OFFSET, SpeechFusion, speech_positions,
                                    splice_speech)
from adapters.video_fusion import VideoFusionCache, VideoFusionModel
from adapters.video_fusion import from_spec as video_from_spec
from speech.config import ConformerConfig, SpeechAdapterConfig, SpeechConfig
from speech.encoder import build_encoder

SPEECH_MODULES = ("speech_encoder", "speech_adapter")
SPEECH_ROWS = (SPEECH_START_OFFSET, SPEECH_END_OFFSET)
"""Learnable-embedding rows the speech stage trained (ids V+2, V+3)."""


@dataclass
class MultimodalCache(VideoFusionCache):
    """`VideoFusionCache` plus the prompt's attached speech until its spans consume it."""

    speech: Tensor | None = None
    speech_lengths: Tensor | None = None


class MultimodalModel(VideoFusionModel):
    """`VideoFusionModel` + Conformer encoder + speech adapter. Build with `assemble` or `from_spec`."""

    def __init__(self, video_model: VideoFusionModel, speech_encoder: nn.Module, speech_adapter: nn.Module):
        blocks = {int(i): b for i, b in video_model.cross_attention_layers.items()}
        video_blocks = {int(i): b for i, b in video_model.video_cross_attention_layers.items()}
        super().__init__(video_model.text_model, video_model.vision_encoder, video_model.vision_projection,
                         blocks, video_model.video_aggregator, video_blocks, video_model.fusion_config)
        self.learnable_embedding.load_state_dict(video_model.learnable_embedding.state_dict())
        self.speech_encoder, self.speech_adapter = speech_encoder, speech_adapter

    def spec(self) -> dict[str, Any]:
        speech = {"encoder": self.speech_encoder.config, "adapter": self.speech_adapter.config}
        return {**super().spec(), "arch": "llama3-multimodal",
                "speech": {k: dataclasses.asdict(v) for k, v in speech.items()}}

    # --- speech ---------------------------------------------------------------------------
    def speech_lengths(self, feat_lengths: Tensor) -> Tensor:
        """Placeholder tokens to reserve per utterance of `feat_lengths` log-mel frames."""
        return self.speech_adapter.output_lengths(self.speech_encoder.output_lengths(feat_lengths))

    def encode_speech(self, feats: Tensor, feat_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Log-mel [N, T, n_mels] → adapter outputs [N, S, dim] and lengths [N]."""
        return self.speech_adapter(*self.speech_encoder(feats, feat_lengths))

    def new_cache(self, batch: int, max_len: int, *, dtype: torch.dtype | None = None) -> MultimodalCache:
        return MultimodalCache(self.text_model.new_cache(batch, max_len, dtype=dtype))

    def attach_speech(self, cache: MultimodalCache, feats: Tensor, feat_lengths: Tensor) -> None:
        """Encode the prompt's audio into an empty cache; the prompt's speech spans receive it."""
        if cache.text.filled:
            raise ValueError("attach speech before the prompt is run through the cache")
        cache.speech, cache.speech_lengths = self.encode_speech(feats, feat_lengths)

    # --- forward --------------------------------------------------------------------------
    def hidden_states(self, tokens: Tensor, *, feats: Tensor | None = None, feat_lengths: Tensor | None = None,
                      cache: MultimodalCache | None = None, **media: Any) -> Tensor:
        """As `VideoFusionModel.hidden_states`, with speech spans filled from `feats` or the cache."""
        embeds = self.embed(tokens)
        if feats is not None:
            embeds = splice_speech(embeds, tokens, *self.encode_speech(feats, feat_lengths), self.config.vocab_size)
        elif cache is not None and cache.speech is not None:
            embeds = splice_speech(embeds, tokens, cache.speech, cache.speech_lengths, self.config.vocab_size)
            cache.speech = cache.speech_lengths = None  # consumed by the prompt
        elif bool(speech_positions(tokens, self.config.vocab_size).any()):
            raise ValueError("tokens hold a speech span but no audio was given (feats or attach_speech)")
        return super().hidden_states(tokens, embeds=embeds, cache=cache, **media)

    def forward(self, tokens: Tensor, **kwargs: Any) -> Tensor:
        return self.output(self.hidden_states(tokens, **kwargs))


def lm_state(model: nn.Module) -> dict[str, Tensor]:
    """The LM's own tensors of a fused model (its top-level LM modules, by their LM keys)."""
    return {k: v for k, v in model.text_model.state_dict().items()}


def assemble(video_model: VideoFusionModel, speech_model: SpeechFusion) -> MultimodalModel:
    """One model from a video-adapter model and a speech-adapter model trained on the same LM.

    Raises ValueError when their LMs differ (they were not trained from the same checkpoint)."""
    a, b = lm_state(video_model), lm_state(speech_model)
    differ = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    if differ or set(b) - set(a):
        raise ValueError(f"the video and speech models wrap different LMs (first differing tensor: "
                         f"{(differ or sorted(set(b) - set(a)))[0]}); train both from the same text checkpoint")
    model = MultimodalModel(video_model, speech_model.speech_encoder, speech_model.speech_adapter)
    with torch.no_grad():
        for row in SPEECH_ROWS:
            model.learnable_embedding.weight[row] = speech_model.learnable_embedding.weight[row]
    return model


def from_spec(spec: dict[str, Any]) -> MultimodalModel:
    """An untrained all-component model of the shape `MultimodalModel.spec()` describes."""
    video_model = video_from_spec({**spec, "arch": "llama3-video"})
    speech = SpeechConfig(encoder=ConformerConfig(**spec["speech"]["encoder"]),
                          adapter=SpeechAdapterConfig(**spec["speech"]["adapter"]))
    encoder = build_encoder(speech.encoder)
    adapter = build_speech_adapter(speech.adapter, enc_dim=speech.encoder.dim, lm_dim=video_model.config.dim)
    return MultimodalModel(video_model, encoder, adapter)


__all__ = ["MultimodalModel", "MultimodalCache", "assemble", "from_spec", "lm_state"]
