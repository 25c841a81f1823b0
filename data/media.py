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

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["decode_image", "decode_audio", "decode_video", "sample_indices"]

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
        import torchaudio.functional as AF

        out = AF.resample(out, sr, target_sr)
    return out


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


def sample_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Uniform frame indices over a clip of `num_available` frames; repeats when it is shorter."""
    if num_available <= 0:
        raise ValueError("video has 0 frames")
    return np.round(np.linspace(0, num_available - 1, num_frames)).astype(np.int64)


def decode_video(
    data: bytes | str | os.PathLike,
    *,
    num_frames: int,
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
) -> torch.Tensor:
    """Decode an mp4/webm/... clip to `num_frames` uniformly sampled RGB frames [N, H, W, 3] uint8.

    `data` is the clip's bytes or a path. decord reads it; if decord cannot, PyAV does.
    Raises ValueError on empty, corrupt, 0-frame or over-`max_frame_pixels` clips.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise ValueError(f"no such video: {path}")
        data = path.read_bytes()
    if not data:
        raise ValueError("empty video")
    try:
        frames = _decode_decord(data, num_frames, max_frame_pixels)
    except _DecordFailed:
        frames = _decode_pyav_video(data, num_frames, max_frame_pixels)
    return torch.from_numpy(np.ascontiguousarray(frames))


class _DecordFailed(Exception):
    """decord could not open or read the clip; fall back to PyAV."""


def _check_frame_size(height: int, width: int, max_frame_pixels: int) -> None:
    if height * width > max_frame_pixels:
        raise ValueError(f"video frame {width}x{height} over max_frame_pixels={max_frame_pixels}")
    if height == 0 or width == 0:
        raise ValueError("video frame has zero size")


def _decode_decord(data: bytes, num_frames: int, max_frame_pixels: int) -> np.ndarray:
    try:
        import decord
    except ImportError as err:
        raise _DecordFailed(str(err)) from None
    try:
        reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
        total = len(reader)
    except Exception as err:  # noqa: BLE001 - decord raises its own DECORDError or RuntimeError
        raise _DecordFailed(str(err)) from None
    if total == 0:
        raise ValueError("video has 0 frames")
    height, width = reader[0].shape[:2]
    _check_frame_size(height, width, max_frame_pixels)
    try:
        batch = reader.get_batch(sample_indices(total, num_frames).tolist()).asnumpy()
    except Exception as err:  # noqa: BLE001
        raise _DecordFailed(str(err)) from None
    return batch


def _decode_pyav_video(data: bytes, num_frames: int, max_frame_pixels: int) -> np.ndarray:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            _check_frame_size(stream.codec_context.height, stream.codec_context.width, max_frame_pixels)
            # Decode sequentially (exact, no seeking). When the header knows the frame count,
            # keep only the sampled frames; otherwise keep all and sample afterwards.
            wanted = sample_indices(stream.frames, num_frames) if stream.frames > 0 else None
            keep = None if wanted is None else set(wanted.tolist())
            frames: dict[int, np.ndarray] = {}
            for i, frame in enumerate(container.decode(stream)):
                if keep is None or i in keep:
                    frames[i] = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, IndexError) as err:  # before ValueError: PyAV errors subclass it
        raise ValueError(f"corrupt video: {err}") from None
    if not frames:
        raise ValueError("video has 0 frames")
    if wanted is None or any(i not in frames for i in wanted.tolist()):
        order = sorted(frames)  # header count was missing or wrong: sample what was decoded
        wanted = np.array([order[i] for i in sample_indices(len(order), num_frames)])
    return np.stack([frames[int(i)] for i in wanted])
