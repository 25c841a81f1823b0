"""Video: uniform frame sampling (decord, PyAV fallback) and the Perceiver-resampler temporal
aggregator that merges groups of consecutive frames into effective frames (llama3-spec §4)."""

from video.config import PRESETS, ResamplerConfig, create_config, list_presets
from video.frames import read_frames, sample_indices
from video.resampler import TemporalAggregator, build_aggregator

__all__ = ["ResamplerConfig", "PRESETS", "create_config", "list_presets", "read_frames",
           "sample_indices", "TemporalAggregator", "build_aggregator"]
