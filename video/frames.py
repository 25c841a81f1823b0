"""Uniform frame sampling from video clips (llama3-spec §4: up to 64 frames sampled uniformly
from the whole video, each then encoded by the image encoder).

decord is the decoder (random access, resize inside the decoder's filter graph, torch bridge);
PyAV is the fallback for anything decord cannot open or decode. Both pick the same frame indices
(`sample_indices`) and give the same pixels up to resampling-filter rounding.

    frames = read_frames("clip.mp4", 16, size=(224, 224))    # uint8 [16, 224, 224, 3]
    frames = read_frames(mp4_bytes, 16, name="shard-3/00042")  # shard samples arrive as bytes

Bad input (tested in tests/video/test_frames.py):
- unreadable (not a video, 0 bytes, no video stream), truncated, or 0 frames → `ValueError`
  whose one-line message names the file; data loaders skip such samples and count them;
- shorter than `num_frames` → frames are repeated in order (uniform sampling with repetition),
  so every clip yields exactly `num_frames` frames;
- a path that does not exist → `FileNotFoundError` (a manifest error, not a bad sample).
"""

from __future__ import annotations

import io
import os
import re
from typing import Literal

import torch
from torch import Tensor

VideoSource = str | os.PathLike | bytes
"""A path to a video file, or the file's bytes (e.g. the `mp4` field of a shard sample)."""

Backend = Literal["auto", "decord", "pyav"]


def sample_indices(total: int, num_frames: int) -> list[int]:
    """Indices of `num_frames` frames spread uniformly over a clip of `total` frames.

    Frame i is the centre of the i-th of `num_frames` equal segments: floor((i + ½) · total /
    num_frames). Indices never decrease; when total < num_frames each frame is repeated about
    num_frames / total times, so short clips are padded by repetition and still cover every frame.
    """
    if total < 1:
        raise ValueError(f"cannot sample from a clip of {total} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return [int((2 * i + 1) * total // (2 * num_frames)) for i in range(num_frames)]


def read_frames(source: VideoSource, num_frames: int, *, size: tuple[int, int] | None = None,
                backend: Backend = "auto", num_threads: int = 1, name: str | None = None) -> Tensor:
    """Decode `num_frames` uniformly sampled frames → uint8 [num_frames, H, W, 3] (RGB).

    size: (height, width) to resize to while decoding; None keeps the clip's resolution.
    backend: "auto" tries decord and falls back to PyAV; "decord"/"pyav" force one decoder.
    num_threads: decoder threads (1 suits data-loader workers; 0 lets the decoder choose).
    name: how error messages name a `bytes` source (paths name themselves).
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "<bytes>")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"unknown video backend {backend!r}; choose auto, decord or pyav")
    if not isinstance(source, bytes) and not os.path.exists(source):
        raise FileNotFoundError(f"video not found: {label}")
    readers = {"auto": (_read_decord, _read_pyav), "decord": (_read_decord,), "pyav": (_read_pyav,)}
    reason = ""
    for read in readers[backend]:
        try:
            return read(source, num_frames, size, num_threads)
        except Exception as err:  # DECORDError, av.error.FFmpegError, _BadVideo, ...
            reason = _one_line(err)  # the last decoder's reason is the one reported
    raise ValueError(f"cannot read video {label}: {reason}")


class _BadVideo(Exception):
    """A file that opened but cannot give the frames asked for (0 frames, truncated)."""


def _one_line(err: Exception) -> str:
    """The first line of a decoder error without decord's log prefix or ffmpeg's errno."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^\[[\d:]+\] \S+: (Check failed: .*? vs\. [^)]*\) )?", "", text)
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)
    return text[:200]


def _open_source(source: VideoSource):
    return io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)


def _read_decord(source: VideoSource, num_frames: int, size: tuple[int, int] | None,
                 num_threads: int) -> Tensor:
    import decord

    height, width = size if size is not None else (-1, -1)
    reader = decord.VideoReader(_open_source(source), width=width, height=height,
                                num_threads=num_threads)
    total = len(reader)
    if total == 0:
        raise _BadVideo("0 frames")
    # Decode each distinct frame once; repetition (short clips) is a gather afterwards.
    unique, inverse = torch.unique(torch.tensor(sample_indices(total, num_frames)), return_inverse=True)
    # The torch bridge only in this scope: set_bridge("torch") is process-wide and would turn
    # other decord users' NDArrays (`.asnumpy()`) into tensors.
    with decord.bridge.use_torch():
        return reader.get_batch(unique.tolist())[inverse]


def _read_pyav(source: VideoSource, num_frames: int, size: tuple[int, int] | None,
               num_threads: int) -> Tensor:
    import av

    total = _count_frames_pyav(source)
    if total == 0:
        raise _BadVideo("0 frames")
    indices = sample_indices(total, num_frames)
    wanted = set(indices)
    resize = {} if size is None else {"height": size[0], "width": size[1], "interpolation": "BICUBIC"}
    decoded: dict[int, Tensor] = {}
    with av.open(_open_source(source)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = num_threads
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    # decord's filter graph scales with ffmpeg's default (bicubic); match it.
                    decoded[index] = torch.from_numpy(frame.to_ndarray(format="rgb24", **resize))
                if index >= indices[-1]:
                    break
        except av.error.FFmpegError as err:
            raise _BadVideo(f"truncated or corrupt: decoding failed ({_one_line(err)})") from None
    if len(decoded) < len(wanted):
        raise _BadVideo(f"truncated: decoded {len(decoded)} of the {len(wanted)} frames sampled "
                        f"from {total}")
    return torch.stack([decoded[i] for i in indices])


def _count_frames_pyav(source: VideoSource) -> int:
    """Frames in the first video stream: the container's count, else one per demuxed packet."""
    import av

    with av.open(_open_source(source)) as container:
        if not container.streams.video:
            raise _BadVideo("no video stream")
        stream = container.streams.video[0]
        if stream.frames > 0:
            return stream.frames
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


__all__ = ["VideoSource", "sample_indices", "read_frames"]
