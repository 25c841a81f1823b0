"""Tiny random checkpoints (text, image, video, speech) and media files for the chat tests.

Each checkpoint is a real checkpoint directory (meta.json spec + model.safetensors + the session
tokenizer), so the tests load it exactly as `herd chat --checkpoint DIR` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def _lm(vocab_size: int):
    from text.config import create_config
    from text.model import Transformer

    torch.manual_seed(0)
    return Transformer(create_config("tiny", vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                     multiple_of=32, max_seq_len=512))


def _save(model, root: Path, tokenizer_dir: Path) -> Path:
    from train.checkpoint import save_checkpoint

    return save_checkpoint(root, model.state_dict(), {"stage": "test", "step": 0, "model": model.spec()},
                           tokenizer=tokenizer_dir / "tokenizer.json")


@pytest.fixture(scope="session")
def text_ckpt(tmp_path_factory, tiny_tokenizer, tiny_tokenizer_dir) -> Path:
    return _save(_lm(tiny_tokenizer.vocab_size), tmp_path_factory.mktemp("ckpt") / "text", tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def image_model(tiny_tokenizer):
    from adapters.fusion import build_fusion_model
    from vision.config import create_config

    torch.manual_seed(1)
    return build_fusion_model(_lm(tiny_tokenizer.vocab_size), create_config("tiny")).eval()


@pytest.fixture(scope="session")
def image_ckpt(tmp_path_factory, image_model, tiny_tokenizer_dir) -> Path:
    return _save(image_model, tmp_path_factory.mktemp("ckpt") / "image", tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def video_model(image_model):
    from adapters.video_fusion import build_video_fusion_model
    from video.config import create_config

    torch.manual_seed(2)
    return build_video_fusion_model(image_model, create_config("tiny", dim=image_model.config.dim)).eval()


@pytest.fixture(scope="session")
def speech_model(tiny_tokenizer):
    from adapters.speech_fusion import build_speech_fusion
    from speech.config import create_config

    torch.manual_seed(3)
    return build_speech_fusion(_lm(tiny_tokenizer.vocab_size), create_config("tiny")).eval()


@pytest.fixture(scope="session")
def media_files(tmp_path_factory) -> dict[str, Path]:
    """A png, an mp4, a wav (44.1 kHz stereo), a 0-byte file, a text file named .png, and a png
    header claiming more pixels than chat accepts."""
    import soundfile
    from PIL import Image

    from data.build_video import encode_mp4

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "photo.png")
    frames = np.full((8, 32, 32, 3), 200, np.uint8)
    frames[:, 8:16, 8:16] = (220, 40, 40)
    (root / "clip.mp4").write_bytes(encode_mp4(frames))
    t = np.arange(int(0.5 * 44_100)) / 44_100
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    soundfile.write(root / "speech.wav", np.stack([tone, tone], axis=1), 44_100)
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("these are notes, not an image\n")
    Image.new("L", (8000, 8000)).save(root / "huge.png", optimize=True)
    return {p.stem: p for p in root.iterdir()}
