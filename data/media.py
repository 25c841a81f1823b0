"""Decoders for the media members of webdataset samples: images, audio, video.

Each decoder takes the raw bytes of one member and returns a model-ready array, or raises
`ValueError` with a short message ("empty image", "video has 0 frames", "image 5000x5000 over
max_pixels=1000000") so that a loader can skip the sample and count it. Nothing here retries or
logs: the caller names the shard and key.

- `decode_image` -> RGB `PIL.Image` (alpha composited onto white).
- `decode_audio` -> float32 mono waveform [T] at `target_sr` (soundfile for wav/flac/ogg/mp3,
  PyAV for anything else); stereo is averaged; resampling with torchaudio.
- `decode_video` -> uint8 frames [N, H, W, 3], N = `num_frames` sampled uniformly over the clip
  (decord, PyAV fallback). A clip with fewer than N frames is *padded by repetition*: the N
  indices round(linspace(0, n-1, N)) repeat frames in temporal order (a 4-frame clip read at
  8 gives frames 0,0,1,1,2,2,3,3 up to rounding), so motion direction is preserved.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["decode_image", "decode_audio", "decode_video"]

DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_AUDIO_SECONDS = 600.0
DEFAULT_MAX_FRAME_PIXELS = 1920 * 1080


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode PNG/JPEG/... bytes into an RGB image; raise ValueError on bad or oversized input.

    The size check reads only the header, so an oversized image is rejected before decoding.
    """
    if not data:
        raise ValueError("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"image {width}x{height} over max_pixels={max_pixels}")
            img.load()
    except ValueError:
        raise
    except (OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"corrupt image: {err}") from None
    if width == 0 or height == 0:
        raise ValueError("image has zero size")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def decode_audio(
    data: bytes, *, target_sr: int = 16000, max_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
) -> torch.Tensor:
    """Decode wav/flac/ogg/mp3/... bytes to a float32 mono waveform [T] at `target_sr`.

    Raises ValueError on empty, corrupt, zero-length or longer-than-`max_seconds` audio.
    Resampling uses torchaudio's windowed-sinc `Resample`, its kernel cached per rate pair.
    """
    if not data:
        raise ValueError("empty audio")
    try:
        wave, sr = _read_soundfile(data, max_seconds)
    except _NotSoundfile:
        wave, sr = _read_pyav_audio(data, max_seconds)
    if wave.size == 0:
        raise ValueError("audio has 0 samples")
    if not np.isfinite(wave).all():
        raise ValueError("audio contains NaN or inf")
    out = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if sr != target_sr:
        with torch.no_grad():
            out = _resampler(sr, target_sr)(out)
    return out


@functools.lru_cache(maxsize=16)
def _resampler(orig_sr: int, target_sr: int) -> torch.nn.Module:
    """A torchaudio Resample with its sinc kernel computed once per rate pair (the costly part)."""
    import torchaudio

    return torchaudio.transforms.Resample(orig_sr, target_sr)


class _NotSoundfile(Exception):
    """libsndfile cannot read this container; try PyAV."""


def _read_soundfile(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames > max_seconds * f.samplerate:
                raise ValueError(f"audio {f.frames / f.samplerate:.1f}s over max_seconds={max_seconds}")
            wave = f.read(dtype="float32", always_2d=True)
            sr = f.samplerate
    except sf.LibsndfileError as err:
        raise _NotSoundfile(str(err)) from None
    except RuntimeError as err:  # truncated data inside a recognised container
        raise ValueError(f"corrupt audio: {err}") from None
    return wave.mean(axis=1), sr


def _read_pyav_audio(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            sr = stream.codec_context.sample_rate or stream.rate
            if not sr:
                raise ValueError("audio has no sample rate")
            # Resample every frame to mono float planar so the pieces concatenate.
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=sr)
            pieces, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    arr = out.to_ndarray()[0]
                    pieces.append(arr)
                    total += arr.size
                    if total > max_seconds * sr:
                        raise ValueError(f"audio over max_seconds={max_seconds}")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray()[0])
    except (av.FFmpegError, OSError, IndexError) as err:  # before ValueError: PyAV errors subclass it
        raise ValueError(f"corrupt audio: {err}") from None
    wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return wave, int(sr)


def decode_video(
    data: bytes | str | os.PathLike,
    *,
    num_frames: int,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> torch.Tensor:
    """Decode an mp4/webm/... clip to `num_frames` uniformly sampled RGB frames [N, H, W, 3] uint8.

    The one frame sampler of herd (`video.frames.read_frames`: decord, PyAV fallback, short clips
    padded by repetition), so training and evaluation see the same frames. Raises ValueError on
    empty, corrupt, truncated, 0-frame, missing or over-`max_frame_pixels` clips.
    """
    from video.frames import read_frames

    if isinstance(data, (str, os.PathLike)) and not Path(data).is_file():
        raise ValueError(f"no such video: {data}")
    if not data:
        raise ValueError("empty video")
    frames = read_frames(data, num_frames)
    height, width = frames.shape[1:3]
    if height * width > max_frame_pixels:
        raise ValueError(f"video frame {width}x{height} over max_frame_pixels={max_frame_pixels}")
    return frames
