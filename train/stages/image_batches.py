"""Tile-aware batches from image shards (`data/build_images.py`: `png` + `json` with "captions",
"qa", "objects", "source") for the two image stages.

- `CaptionBatcher` (`vision-clip`): {"pixels" [B, max_tiles, 3, t, t], "ratio_ids" [B],
  "tokens" [B, L]}: each image with one of its captions, right-padded, ending in `<|eot_id|>`.
- `ImageChatBatcher` (`vision-adapter`): {"tokens" [B, L], "targets" [B, L-1], "images"
  [B, 1, max_tiles, 3, t, t], "ratio_ids" [B, 1]}: the chat turn "user: <|image|> PROMPT →
  assistant: ANSWER" (llama3-spec §7 image SFT), loss on the answer and its `<|eot_id|>` only.
  With `pack` the batch's samples share rows as documents: "doc_ids" [R, L] is added and
  "images" [R, pack, …] holds each row's images in order (ratio id 0 = none).

Images of different aspect ratios share a batch: `vision.transforms.collate_images` pads missing
tiles with zeros and missing images with aspect-ratio id 0. Which caption or question a sample
contributes is a pure function of (seed, epoch, sample key), so the shard reader's position is
the whole loader state and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from vision.transforms import ImageTransform, Tiles, collate_images, region_mask

IGNORE = -100
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")
TASKS = ("caption", "qa")
"""What a sample can be turned into: its caption(s) after the describe prompt, or its QA pairs."""
CAPTION_CHOICES = ("any", "first")
"""Which captions a sample may answer with: any of them, or its first (canonical) one only."""


def vision_config(preset: str, *, tile_size: int = 0, max_tiles: int = 0):
    """The image-encoder preset with the stage's tile overrides (0 = keep the preset's)."""
    from vision.config import create_config

    overrides = {k: v for k, v in (("tile_size", tile_size), ("max_tiles", max_tiles)) if v}
    return create_config(preset, **overrides)


def decode_image_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw shard sample → {"key", "image": PIL RGB, "json": dict}; needs an image and `json`."""
    from data.media import decode_image

    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        raise KeyError("png")
    if "json" not in sample:
        raise KeyError("json")
    return {"key": sample["__key__"], "shard": sample["__shard__"], "image": decode_image(sample[ext]), "json": json.loads(sample["json"])}


def image_reader(shards: Sequence[Path], *, rank: int, world_size: int, seed: int, shuffle: bool = True,
                 epochs: int | None = None):
    from data.shards import ShardReader

    return ShardReader(shards, slot=rank, num_slots=world_size, seed=seed, shuffle=shuffle, epochs=epochs,
                       decode=decode_image_sample, required=("json",))


def prompt_answers(meta: dict[str, Any], tasks: Sequence[str], describe: str,
                   captions: str = "any") -> list[tuple[str, str]]:
    """The (prompt, answer) turns a sample offers: (describe, caption) per caption for "caption"
    (`captions="first"`: its first caption only), (question, answer) per pair for "qa"."""
    if captions not in CAPTION_CHOICES:
        raise ValueError(f"unknown caption choice {captions!r}; choose from {', '.join(CAPTION_CHOICES)}")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown image task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    turns = []
    if "caption" in tasks:
        turns += [(describe, c) for c in meta.get("captions", [])[: 1 if captions == "first" else None]]
    if "qa" in tasks:
        turns += [(qa["q"], qa["a"]) for qa in meta.get("qa", [])]
    return turns


def choose(options: Sequence, seed: int, epoch: int, key: str):
    """One of `options`, fixed by (seed, epoch, key): no RNG stream to save for exact resume."""
    return options[random.Random(f"{seed}:{epoch}:{key}").randrange(len(options))]


def image_prompt(chat, prompt: str, answer: str | None = None) -> tuple[list[int], list[bool]]:
    """(tokens, loss mask) of "user: <|image|> prompt" followed by the assistant's answer, or — with
    answer None — by the assistant header, ready for generation (mask all False)."""
    user_header = len(chat.encode_header("user"))
    if answer is None:
        tokens = chat.encode_dialog([{"role": "user", "content": prompt}], add_generation_prompt=True)
        mask = [False] * len(tokens)
    else:
        tokens, mask = chat.encode_for_training([{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": answer}])
    at = 1 + user_header  # right after <|begin_of_text|> and the user header
    return tokens[:at] + [chat.tokenizer.image_id] + tokens[at:], mask[:at] + [False] + mask[at:]


class _ImageBatcher:
    """Shared reading/transforming; subclasses turn a list of samples into a batch."""

    def __init__(self, shards: Sequence[Path], transform: ImageTransform, *, batch_size: int, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True, epochs: int | None = None):
        self.transform, self.batch_size, self.seed = transform, batch_size, seed
        self.reader = image_reader(shards, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle,
                                   epochs=epochs)

    def make_batch(self, samples: list[dict[str, Any]], tiles: list[Tiles]) -> dict[str, Tensor]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        while True:
            samples = []
            for sample in self.reader:
                sample["epoch"] = self.reader.epoch
                samples.append(sample)
                if len(samples) == self.batch_size:
                    break
            if not samples:
                return
            yield self.make_batch(samples, [self.transform(s["image"]) for s in samples])

    def state_dict(self) -> dict[str, Any]:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reader.load_state_dict(state)


class CaptionBatcher(_ImageBatcher):
    """Image–caption pairs for contrastive training; captions are cut to `context_length` tokens.

    With `region_patch` (the encoder's patch size) a batch also carries the grounded objects of its
    samples (json `objects` with `name` and pixel `box`) as `region_*` tensors, `vision.clip.Regions`
    field by field, each object's phrase its colour and name ("a green abalone")."""

    def __init__(self, shards: Sequence[Path], tokenizer, transform: ImageTransform, *, context_length: int,
                 region_patch: int = 0, **kw):
        super().__init__(shards, transform, **kw)
        self.tokenizer, self.context_length, self.region_patch = tokenizer, context_length, region_patch

    def caption_tokens(self, caption: str) -> list[int]:
        return self.tokenizer.encode(caption.strip())[: self.context_length - 1] + [self.tokenizer.eot_id]

    def make_batch(self, samples: list[dict[str, Any]], tiles: list[Tiles]) -> dict[str, Tensor]:
        captions = [choose(s["json"]["captions"], self.seed, s["epoch"], s["key"]) for s in samples]
        batch = caption_batch(tiles, [self.caption_tokens(c) for c in captions], self.tokenizer.pad_id,
                              self.transform.max_tiles)
        if self.region_patch:
            batch.update(self.regions(samples, tiles))
        return batch

    def regions(self, samples: list[dict[str, Any]], tiles: list[Tiles]) -> dict[str, Tensor]:
        """{"region_image", "region_mask", "region_tokens", "region_phrase"} of the boxes whose patch
        tokens are not empty; {} when the batch has none."""
        from data.scenes import article

        image, masks, phrases = [], [], []
        for i, (sample, t) in enumerate(zip(samples, tiles)):
            for obj in sample["json"].get("objects") or []:
                if not obj.get("name") or not obj.get("box"):
                    continue
                mask = region_mask(tuple(obj["box"]), t, self.region_patch, self.transform.max_tiles)
                if mask.any():
                    image.append(i)
                    masks.append(mask)
                    phrases.append(article(" ".join(filter(None, (obj.get("color"), obj["name"])))))
        if not image:
            return {}
        ids = {p: n for n, p in enumerate(dict.fromkeys(phrases))}
        return {"region_image": torch.tensor(image), "region_mask": torch.stack(masks),
                "region_tokens": pad_token_rows([self.caption_tokens(p) for p in phrases], self.tokenizer.pad_id),
                "region_phrase": torch.tensor([ids[p] for p in phrases])}


def pad_token_rows(tokens: list[list[int]], pad_id: int) -> Tensor:
    """Token lists → [B, longest] right-padded with pad_id."""
    rows = torch.full((len(tokens), max(len(t) for t in tokens)), pad_id, dtype=torch.long)
    for i, t in enumerate(tokens):
        rows[i, :len(t)] = torch.tensor(t)
    return rows


def caption_batch(tiles: list[Tiles], tokens: list[list[int]], pad_id: int, max_tiles: int) -> dict[str, Tensor]:
    """One image and one token row per sample → {"pixels", "ratio_ids", "tokens"}."""
    pixels, ratio_ids = collate_images([[t] for t in tiles], max_tiles)
    return {"pixels": pixels[:, 0], "ratio_ids": ratio_ids[:, 0], "tokens": pad_token_rows(tokens, pad_id)}


class ImageChatBatcher(_ImageBatcher):
    """Chat turns about an image; each sample contributes one (prompt, answer) of `tasks`."""

    def __init__(self, shards: Sequence[Path], tokenizer, transform: ImageTransform, *, seq_len: int,
                 tasks: Sequence[str], describe: str, captions: str = "any", pack: int = 0, **kw):
        """pack: put up to this many samples in a row (`chat_data.group_documents`), each a
        document with its own image, instead of one padded row per sample (0)."""
        from text.chat_format import ChatFormat

        super().__init__(shards, transform, **kw)
        self.chat, self.pad_id = ChatFormat(tokenizer), tokenizer.pad_id
        self.seq_len, self.tasks, self.describe, self.captions = seq_len, tuple(tasks), describe, captions
        self.pack = pack
        prompt_answers({}, self.tasks, describe, captions)  # unknown names fail here, not mid-run

    def encode(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        tokens, mask = image_prompt(self.chat, prompt, answer)
        tokens, mask = tokens[: self.seq_len + 1], mask[: self.seq_len + 1]
        return tokens, [t if m else IGNORE for t, m in zip(tokens[1:], mask[1:])]

    def make_batch(self, samples: list[dict[str, Any]], tiles: list[Tiles]) -> dict[str, Tensor]:
        rows = []
        for s in samples:
            turns = prompt_answers(s["json"], self.tasks, self.describe, self.captions)
            if not turns:
                raise ValueError(f"{s['shard']}: key {s['key']}: no captions or QA for tasks {self.tasks}")
            rows.append(self.encode(*choose(turns, self.seed, s["epoch"], s["key"])))
        from train.stages.chat_data import group_documents, pack_rows, pad_rows

        if self.pack:
            groups = group_documents([len(tokens) for tokens, _ in rows], self.pack)
            batch = pack_rows(rows, groups, self.pad_id)
        else:
            groups, batch = [[i] for i in range(len(rows))], pad_rows(rows, self.pad_id)
        images, ratio_ids = collate_images([[tiles[i] for i in g] for g in groups], self.transform.max_tiles)
        return {**batch, "images": images, "ratio_ids": ratio_ids}


__all__ = ["vision_config", "CaptionBatcher", "ImageChatBatcher", "TASKS", "CAPTION_CHOICES", "IGNORE", "decode_image_sample", "prompt_answers",
           "image_prompt", "choose", "caption_batch", "pad_token_rows", "image_reader"]
