"""Trainable-set policies (DESIGN stages; STYLE point 7): a policy names the parameters a stage
trains; `apply_policy` is the only place that sets `requires_grad`.

    names = vision_adapter_policy(fused)     # LM frozen; encoder, projection, blocks, new rows
    params = apply_policy(fused, names)      # the parameters to hand to the optimiser
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from adapters.fusion import FusionModel

Policy = Callable[[nn.Module], set[str]]


def vision_adapter_policy(model: FusionModel) -> set[str]:
    """`vision-adapter`: the LM stays frozen (its original embedding rows included); the image
    encoder, projection, cross-attention blocks and the 8 new token rows train."""
    return set(model.fusion_params())


def video_adapter_policy(model: nn.Module) -> set[str]:
    """`video-adapter`: the LM and the whole image path (encoder, projection, image blocks, new
    token rows) stay frozen; the temporal aggregator and the video cross-attention blocks train
    (the video parameters of `adapters.video_fusion.VideoFusionModel`)."""
    return set(model.video_params())


def full_policy(model: nn.Module) -> set[str]:
    """Everything trains (`text-pretrain`, `vision-clip`)."""
    return {n for n, _ in model.named_parameters()}


def frozen_policy(model: nn.Module) -> set[str]:
    """Nothing trains (reference models, evaluation)."""
    return set()


def speech_adapter_policy(model: nn.Module) -> set[str]:
    """`speech-adapter`: the LM stays frozen; the Conformer encoder, the speech adapter and the
    new token rows train (the fusion parameters of `adapters.speech_fusion.SpeechFusion`)."""
    return set(model.fusion_params())


POLICIES: dict[str, Policy] = {"vision-adapter": vision_adapter_policy,
                               "speech-adapter": speech_adapter_policy,
                               "video-adapter": video_adapter_policy, "speech-bestrq": full_policy,
                               "vision-clip": full_policy, "full": full_policy,
                               "frozen": frozen_policy}
"""Policies by stage name (and the two generic ones)."""


def apply_policy(model: nn.Module, trainable: set[str]) -> list[nn.Parameter]:
    """Set requires_grad from the named set (unknown names are an error); return the trainable
    parameters in module order."""
    params = dict(model.named_parameters())
    unknown = trainable - set(params)
    if unknown:
        raise ValueError(f"policy names parameters the model does not have: {sorted(unknown)[:5]}")
    for name, p in params.items():
        p.requires_grad_(name in trainable)
    return [p for name, p in params.items() if name in trainable]


def trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


__all__ = ["Policy", "POLICIES", "vision_adapter_policy", "video_adapter_policy", "speech_adapter_policy",
           "full_policy", "frozen_policy", "apply_policy", "trainable_names"]
