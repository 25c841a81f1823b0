"""Batches of video clips in the chat format, read from shards built by `data/build_video.py`
(sample keys `mp4` and `json` {"captions", "motion", "object", ...}; llama3-spec §4).

Each clip becomes one dialogue, loss on the assistant's tokens only:

    user: <|video|>Describe the motion.      assistant: a giraffe moves left<|eot_id|>

The prompt and the caption are picked from the sample's key (a hash, no RNG stream), so the
reader's state_dict *is* the exact position.

Frozen-feature cache (`FrameFeatures`): the image encoder and projection are frozen in this
stage and clips get no augmentation, so each clip's projected frame tokens are the same on every
epoch. With a cache, a clip is decoded and encoded once, on its first read; later reads return
the stored features (~140 KB per tiny clip: 8 frames × 17 tokens × 256 × fp32) and skip both
decoding and encoding. Batches then carry `video_features` instead of pixels.

Frames: `video.frames.read_frames` samples `num_frames` uniformly (decord, PyAV fallback) and
`video.transform.VideoTransform` turns each into one tile. Bad clips:
- shorter than `num_frames` → frames repeated in order (padding by repetition), trained on;
- unreadable, truncated, not a video or 0 frames → skipped and counted by the shard reader
  (`reader.skipped["corrupt"]`, one warning naming shard and key).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from train.stages.chat_data import IGNORE, pad_rows
from video.frames import read_frames
from video.transform import VideoTransform


VIDEO_TASKS = ("caption", "qa")
"""What a clip can be turned into: a caption after one of the prompts, or one of its QA pairs."""


def pick(key: str, options: Sequence[str], salt: str) -> str:
    """A fixed choice among `options` for the sample `key` (stable across runs and resumes)."""
    return options[zlib.crc32(f"{salt}:{key}".encode()) % len(options)]


class FrameFeatures:
    """Projected frame tokens [F, S, dim] per clip name, computed once by the model's frozen
    image path (`VideoFusionModel.frame_features`) and kept on the CPU."""

    def __init__(self, model):
        self.model = model
        self.stored: dict[str, Tensor] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.stored

    def __getitem__(self, name: str) -> Tensor:
        return self.stored[name]

    @torch.no_grad()
    def encode(self, name: str, pixels: Tensor, ratio_ids: Tensor) -> Tensor:
        device = next(self.model.parameters()).device
        self.stored[name] = self.model.frame_features(pixels[None].to(device), ratio_ids[None].to(device))[0].cpu()
        return self.stored[name]


class ClipDecoder:
    """Shard sample → {"key", "json"} plus "video" [F, 1, 3, t, t] and "video_ratio_ids" [F], or
    with a `FrameFeatures` cache "video_features" [F, S, dim].

    Raises ValueError for a clip that cannot give frames (the reader skips and counts it).
    """

    def __init__(self, num_frames: int, tile_size: int, *, backend: str = "auto",
                 features: FrameFeatures | None = None):
        self.num_frames, self.backend, self.features = num_frames, backend, features
        self.transform = VideoTransform(tile_size)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        for ext in ("mp4", "json"):
            if ext not in sample:
                raise KeyError(ext)
        name = f"{sample.get('__shard__', '?')}/{sample['__key__']}"
        out = {"key": sample["__key__"], "json": json.loads(sample["json"])}
        if self.features is not None and name in self.features:
            return {**out, "video_features": self.features[name]}
        frames = read_frames(sample["mp4"], self.num_frames, backend=self.backend, name=name)
        pixels, ratio_ids = self.transform(frames)
        if self.features is not None:
            return {**out, "video_features": self.features.encode(name, pixels, ratio_ids)}
        return {**out, "video": pixels, "video_ratio_ids": ratio_ids}


class VideoPrompt:
    """Token ids of the chat-format video dialogue (training rows and generation prompts)."""

    def __init__(self, tokenizer, prompts: Sequence[str]):
        from text.chat_format import ChatFormat

        if not prompts:
            raise ValueError("video.prompts is empty: need at least one user prompt")
        self.tokenizer, self.prompts = tokenizer, list(prompts)
        self.chat = ChatFormat(tokenizer)

    def prompt(self, text: str, media_id: int | None = None) -> list[int]:
        """`<|begin_of_text|>` user header, `<|video|>` (or `media_id`), text, `<|eot_id|>`,
        assistant header."""
        tok = self.tokenizer
        media = tok.video_id if media_id is None else media_id
        return [tok.bos_id, *self.chat.encode_header("user"), media, *tok.encode(text.strip()),
                tok.eot_id, *self.chat.encode_header("assistant")]

    def training_row(self, key: str, meta: dict[str, Any], tasks: Sequence[str] = ("caption",),
                     epoch: int = 0) -> tuple[list[int], list[int]]:
        """(tokens, targets) with targets = next token on the reply and its `<|eot_id|>` only.

        "caption": one of the prompts → one of the clip's captions, fixed by the key. With "qa" as
        well, each epoch draws (by key and epoch) either that or one of the clip's QA pairs
        ("How does the teapot move?" → "down"), whose reply is the motion alone.
        """
        turns = []
        if "caption" in tasks:
            turns.append((pick(key, self.prompts, "prompt"), pick(key, meta["captions"], "caption")))
        if "qa" in tasks:
            turns += [(qa["q"], qa["a"]) for qa in meta.get("qa", [])]
        if not turns:
            raise KeyError("captions" if "caption" in tasks else "qa")
        question, answer = turns[zlib.crc32(f"turn:{epoch}:{key}".encode()) % len(turns)]
        prompt = self.prompt(question)
        reply = [*self.tokenizer.encode(answer.strip()), self.tokenizer.eot_id]
        tokens = prompt + reply
        targets = [IGNORE] * (len(prompt) - 1) + reply
        return tokens, targets


class VideoBatcher:
    """{"tokens" [B, L], "targets" [B, L-1], "video" [B, F, 1, 3, t, t], "video_ratio_ids" [B, F]}
    (with `features`: "video_features" [B, F, S, dim] in place of the two video entries)."""

    def __init__(self, shards: Sequence[Path], tokenizer, *, prompts: Sequence[str], num_frames: int,
                 tile_size: int, batch_size: int, backend: str = "auto", features: FrameFeatures | None = None,
                 rank: int = 0, world_size: int = 1, seed: int = 0, epochs: int | None = None,
                 shuffle: bool = True, tasks: Sequence[str] = ("caption",)):
        from data.shards import ShardReader

        unknown = set(tasks) - set(VIDEO_TASKS)
        if unknown or not tasks:
            raise ValueError(f"video tasks {sorted(tasks)}: choose one or more of {', '.join(VIDEO_TASKS)}")
        self.rows, self.tasks = VideoPrompt(tokenizer, prompts), tuple(tasks)
        self.pad_id, self.batch_size = tokenizer.pad_id, batch_size
        decode = ClipDecoder(num_frames, tile_size, backend=backend, features=features)
        self.reader = ShardReader(shards, slot=rank, num_slots=world_size, seed=seed, shuffle=shuffle,
                                  epochs=epochs, decode=decode, required=("mp4", "json"))

    @property
    def skipped(self):
        """Bad samples skipped so far, by reason (`corrupt` for clips that gave no frames)."""
        return self.reader.skipped

    def collate(self, clips: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = pad_rows([self.rows.training_row(c["key"], c["json"], self.tasks, c["epoch"]) for c in clips],
                         self.pad_id)
        for key in ("video", "video_ratio_ids", "video_features"):
            if key in clips[0]:
                batch[key] = torch.stack([c[key] for c in clips])
        return batch

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            clips = []
            for clip in self.reader:
                clips.append({**clip, "epoch": self.reader.epoch})
                if len(clips) == self.batch_size:
                    break
            if not clips:
                return
            yield self.collate(clips)

    def state_dict(self) -> dict[str, Any]:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reader.load_state_dict(state)


__all__ = ["pick", "FrameFeatures", "ClipDecoder", "VideoPrompt", "VideoBatcher"]
