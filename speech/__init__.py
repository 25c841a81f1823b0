"""The Llama 3 speech encoder path: log-mel front end, stride-4 stacking + rotary Conformer
encoder, BEST-RQ pretraining, augmentations and a linear CTC probe (llama3-spec §5)."""

from speech.bestrq import BestRQ, RandomProjectionQuantizer, build_bestrq
from speech.config import (BestRQConfig, ConformerConfig, FeatureConfig, SpeechAdapterConfig,
                           SpeechConfig, create_config, list_presets)
from speech.encoder import ConformerEncoder, build_encoder
from speech.features import LogMelFrontEnd, load_audio, to_mono

__all__ = ["SpeechConfig", "FeatureConfig", "ConformerConfig", "BestRQConfig", "SpeechAdapterConfig",
           "create_config", "list_presets", "LogMelFrontEnd", "load_audio", "to_mono",
           "ConformerEncoder", "build_encoder", "BestRQ", "RandomProjectionQuantizer", "build_bestrq"]
