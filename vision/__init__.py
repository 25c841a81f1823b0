"""Image path: the tiled ViT/14 encoder (Llama 3.2 Vision layout), its presets, image→tile
transforms and the contrastive (CLIP) pretraining unit."""

from vision.config import PRESETS, VisionConfig, create_config, list_presets
from vision.encoder import VisionEncoder, build_encoder
from vision.transforms import ImageTransform, Tiles, collate_images

__all__ = ["VisionConfig", "PRESETS", "create_config", "list_presets", "VisionEncoder",
           "build_encoder", "ImageTransform", "Tiles", "collate_images"]
