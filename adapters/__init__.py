"""Adapters that extend the frozen LM: tanh gate, gated cross-attention block, the fusion
wrapper with its schedule, the vision→LM projection and trainable-set policies."""

from adapters.cross_attention import CrossAttentionBlock
from adapters.fusion import FusionCache, FusionConfig, FusionModel, build_fusion_model, fusion_schedule
from adapters.gate import TanhGate
from adapters.policies import apply_policy, vision_adapter_policy
from adapters.projection import VisionProjection

__all__ = ["TanhGate", "CrossAttentionBlock", "FusionConfig", "FusionModel", "FusionCache",
           "build_fusion_model", "fusion_schedule", "VisionProjection", "apply_policy",
           "vision_adapter_policy"]
