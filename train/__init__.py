"""Training: one generic loop (`train.loop.train`), one small unit per stage (`train.stages`),
typed configs, checkpoints and distributed setup."""

from train.config import RunConfig, load_config
from train.stages import STAGES, get_stage, list_stages

__all__ = ["RunConfig", "load_config", "STAGES", "get_stage", "list_stages"]
