"""Media files → what a fused model takes through its cache (docs/internals.md "Multimodal models").

    item = load_media(model, "image", "cat.png")          # checks the file, decodes, transforms
    tokens = item.tokens                                   # <|image|> / <|video|> / a speech span
    attach = attach_media(model, [item, …])                # for text.generate(…, attach=attach)

| kind  | model method    | prepared by                                        | prompt tokens          |
|-------|-----------------|----------------------------------------------------|------------------------|
| image | attach_images   | vision.transforms.ImageTransform + collate_images  | `<|image|>` (id V)     |
| video | attach_video    | video.frames.read_frames + video.transform         | `<|video|>` (id V+1)   |
| audio | attach_speech   | speech.features.load_features (any format / rate)  | `speech_span(n, V)`    |

Every check fails with one ValueError / FileNotFoundError line naming the file: a missing path,
a folder, a 0-byte or oversized file, a file that does not decode as its kind, media the
checkpoint has no adapter for. A conversation may hold many images and audio clips but one video
(the video path encodes one clip per batch row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["MEDIA_KINDS", "MediaItem", "accepts", "load_media", "attach_media", "MAX_FILE_BYTES",
           "MAX_IMAGE_PIXELS"]

MEDIA_KINDS: dict[str, str] = {"image": "attach_images", "video": "attach_video", "audio": "attach_speech"}
"""Media kind → the model method that takes it (a model accepts a kind iff it has the method)."""

MAX_FILE_BYTES = 200 << 20
"""Largest media file accepted (200 MiB): a chat turn should not wait minutes on decoding."""

MAX_IMAGE_PIXELS = 50_000_000
"""Largest image accepted (width × height); larger ones are refused before they are decoded."""


@dataclass
class MediaItem:
    """One prepared file: its prompt tokens and the tensors its attach call needs."""

    kind: str
    """image, video or audio."""
    path: str
    tokens: list[int]
    """Ids placed in the user turn that carries the file (images/video before its text, speech after)."""
    tensors: tuple[Tensor, ...]
    """image: (Tiles,) as pixels [tiles, 3, t, t] + ratio id; video: (pixels [F, 1, 3, t, t],
    ratio_ids [F]); audio: (log-mel [T, 80],)."""
    ratio_id: int = 0
    """The image's aspect-ratio id (images only)."""


def accepts(model: nn.Module, kind: str) -> bool:
    return hasattr(model, MEDIA_KINDS[kind])


def _check_file(kind: str, path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES >> 20} MiB")
    return path


def load_media(model: nn.Module, kind: str, path: str | Path, *, video_frames: int | None = None) -> MediaItem:
    """Check, decode and transform one file for `model`; raises ValueError/FileNotFoundError."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"unknown media kind {kind!r}; choose image, video or audio")
    if not accepts(model, kind):
        arch = model.spec().get("arch", type(model).__name__) if hasattr(model, "spec") else type(model).__name__
        raise ValueError(f"this checkpoint ({arch}) takes no {kind} input (it has no {kind} adapter)")
    path = _check_file(kind, path)
    return {"image": _image, "video": _video, "audio": _audio}[kind](model, path, video_frames)


def _image(model: nn.Module, path: Path, _: int | None) -> MediaItem:
    from PIL import Image, UnidentifiedImageError

    from vision.transforms import ImageTransform

    config = model.vision_encoder.config
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{path} is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels")
            image.load()
            tiles = ImageTransform(config.tile_size, config.max_tiles)(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path} is not a readable image ({str(err).splitlines()[0][:120]})") from None
    return MediaItem("image", str(path), [model.config.vocab_size], (tiles.pixels,), tiles.ratio_id)


def _video(model: nn.Module, path: Path, frames: int | None) -> MediaItem:
    from video.frames import read_frames
    from video.transform import VideoTransform

    count = frames or model.resampler_config.frames_per_group
    decoded = read_frames(str(path), count)  # ValueError naming the file when it is not a video
    pixels, ratio_ids = VideoTransform(model.vision_encoder.config.tile_size)(decoded)
    return MediaItem("video", str(path), [model.config.vocab_size + 1], (pixels, ratio_ids))


def _audio(model: nn.Module, path: Path, _: int | None) -> MediaItem:
    from adapters.speech_fusion import speech_span
    from speech.features import LogMelFrontEnd, load_features

    try:
        feats, lengths = load_features([path], LogMelFrontEnd())
    except Exception as err:  # soundfile / PyAV raise their own types for undecodable files
        raise ValueError(f"{path} is not readable audio ({str(err).strip().splitlines()[0][:120]})") from None
    if int(lengths[0]) < 2:
        raise ValueError(f"{path} holds no audio samples")
    n = int(model.speech_lengths(lengths)[0])
    return MediaItem("audio", str(path), speech_span(n, model.config.vocab_size).tolist(), (feats[0],))


def attach_media(model: nn.Module, items: Sequence[MediaItem]) -> Callable[[object], None] | None:
    """The `attach(cache)` for text.generate that hands every item of a prompt (in order) to the
    model; None when there are none."""
    if not items:
        return None
    by_kind = {kind: [i for i in items if i.kind == kind] for kind in MEDIA_KINDS}
    if len(by_kind["video"]) > 1:
        raise ValueError("a conversation can hold one video; /reset to start a new one")

    def attach(cache) -> None:
        if by_kind["image"]:
            from vision.transforms import Tiles, collate_images

            tiles = [Tiles(i.tensors[0], (0, 0), i.ratio_id) for i in by_kind["image"]]
            pixels, ratio_ids = collate_images([tiles], model.vision_encoder.config.max_tiles)
            model.attach_images(cache, pixels, ratio_ids)
        if by_kind["video"]:
            pixels, ratio_ids = by_kind["video"][0].tensors
            model.attach_video(cache, pixels[None], ratio_ids[None])
        if by_kind["audio"]:
            feats = [i.tensors[0] for i in by_kind["audio"]]
            lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
            model.attach_speech(cache, nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths)

    return attach
