"""The stage registry: `herd train STAGE` names → (typed config class, unit module).

Each unit module has `build(config, env) -> TrainUnit`. Importing this package is light (no torch):
the CLI builds its options from the config classes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from train.config import RunConfig
from train.stage_configs import (AnnealConfig, DPOConfig, LongContextConfig, PretrainConfig, SFTConfig,
                                 SpeechAdapterConfig, SpeechBestRQConfig, VideoAdapterConfig, VisionAdapterConfig,
                                 VisionClipConfig)


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[RunConfig]
    module: str
    """Module with `build(config, env) -> TrainUnit`."""

    def builder(self):
        return importlib.import_module(self.module).build


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("text-pretrain", PretrainConfig, "train.stages.text_pretrain"),
    Stage("text-sft", SFTConfig, "train.stages.text_sft"),
    Stage("text-dpo", DPOConfig, "train.stages.text_dpo"),
    Stage("vision-clip", VisionClipConfig, "train.stages.vision_clip"),
    Stage("vision-adapter", VisionAdapterConfig, "train.stages.vision_adapter"),
    Stage("video-adapter", VideoAdapterConfig, "train.stages.video_adapter"),
    Stage("speech-bestrq", SpeechBestRQConfig, "train.stages.speech_bestrq"),
    Stage("speech-adapter", SpeechAdapterConfig, "train.stages.speech_adapter"),
    Stage("text-longctx", LongContextConfig, "train.stages.text_longctx"),
    Stage("text-anneal", AnnealConfig, "train.stages.text_anneal"),
)}


def list_stages() -> list[str]:
    return list(STAGES)


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; choose from {', '.join(STAGES)}")
    return STAGES[name]


__all__ = ["Stage", "STAGES", "list_stages", "get_stage"]
