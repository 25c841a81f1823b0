"""Evaluation harness: caption (CIDEr-D / BLEU-4), and later text, video and ASR tasks."""

__all__: list[str] = []
