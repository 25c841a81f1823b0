"""Adapters that extend the frozen LM: tanh gate, gated cross-attention block, the fusion
wrapper with its schedule, the vision→LM projection, the speech adapter that feeds the LM token
embeddings, and trainable-set policies."""

from adapters.cross_attention import CrossAttentionBlock
from adapters.fusion import FusionCache, FusionConfig, FusionModel, build_fusion_model, fusion_schedule
from adapters.gate import TanhGate
from adapters.policies import apply_policy, speech_adapter_policy, vision_adapter_policy
from adapters.projection import VisionProjection
from adapters.speech_adapter import SpeechAdapter, build_speech_adapter
from adapters.speech_fusion import SpeechFusion, build_speech_fusion, speech_span, speech_token_ids

__all__ = ["TanhGate", "CrossAttentionBlock", "FusionConfig", "FusionModel", "FusionCache",
           "build_fusion_model", "fusion_schedule", "VisionProjection", "apply_policy",
           "vision_adapter_policy", "speech_adapter_policy", "SpeechAdapter", "build_speech_adapter",
           "SpeechFusion", "build_speech_fusion", "speech_span", "speech_token_ids"]
