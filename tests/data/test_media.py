"""data.media decoders: good paths and every bad input the loader must be able to skip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from data.media import decode_audio, decode_image, decode_video


# ---------------------------------------------------------------------------------------- helpers

def png(size=(32, 24), mode="RGB", color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else color + (128,)).save(buf, format="PNG")
    return buf.getvalue()


def audio_bytes(fmt: str, sr: int = 22050, seconds: float = 0.5, channels: int = 1) -> bytes:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt)
    return buf.getvalue()


def mp3_bytes(sr: int = 16000, seconds: float = 0.5) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=sr, layout="mono")
        t = np.arange(int(sr * seconds)) / sr
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def mp4_bytes(n: int = 8, size: int = 32) -> bytes:
    from data.build_video import encode_mp4

    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i, :, : 4 * (i + 1)] = 255  # a white bar that grows: frame order is visible
    return encode_mp4(frames)


# ------------------------------------------------------------------------------------------ image

def test_decode_image_good_rgb_and_alpha():
    img = decode_image(png(), max_pixels=10_000)
    assert img.mode == "RGB" and img.size == (32, 24)
    rgba = decode_image(png(mode="RGBA"), max_pixels=10_000)
    assert rgba.mode == "RGB"  # alpha composited onto white


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"definitely not an image", "corrupt"),
    (png()[:60], "corrupt"),  # truncated PNG
])
def test_decode_image_bad(data, match):
    with pytest.raises(ValueError, match=match):
        decode_image(data, max_pixels=10_000)


def test_decode_image_over_pixel_limit():
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(png(size=(200, 200)), max_pixels=100 * 100)


# ------------------------------------------------------------------------------------------ audio

@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_decode_audio_formats_resampled(fmt):
    wave = decode_audio(audio_bytes(fmt, sr=22050, seconds=0.5), target_sr=16000)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert abs(wave.numel() - 8000) <= 2
    assert 0.2 < wave.abs().max() < 0.4


def test_decode_audio_stereo_to_mono():
    wave = decode_audio(audio_bytes("WAV", sr=16000, channels=2), target_sr=16000)
    assert wave.ndim == 1 and wave.numel() == 8000


def test_decode_audio_mp3():
    wave = decode_audio(mp3_bytes(), target_sr=16000)
    assert wave.ndim == 1 and 7000 < wave.numel() < 9500


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"RIFF\x00\x00 garbage that is no audio at all" * 3, "corrupt"),
])
def test_decode_audio_bad(data, match):
    with pytest.raises(ValueError, match=match):
        decode_audio(data)


def test_decode_audio_zero_length():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, np.float32), 16000, format="WAV")
    with pytest.raises(ValueError, match="0 samples"):
        decode_audio(buf.getvalue())


def test_decode_audio_too_long():
    with pytest.raises(ValueError, match="max_seconds"):
        decode_audio(audio_bytes("FLAC", sr=16000, seconds=2.0), max_seconds=1.0)


# ------------------------------------------------------------------------------------------ video

def test_decode_video_bytes_and_path(tmp_path):
    data = mp4_bytes(8)
    frames = decode_video(data, num_frames=4)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == torch.uint8
    bar = (frames[..., 0] > 128).sum(dim=(1, 2))
    assert torch.all(bar[1:] > bar[:-1])  # sampled in temporal order
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    assert torch.equal(decode_video(path, num_frames=4), frames)


def test_decode_video_short_clip_padded_by_repetition():
    frames = decode_video(mp4_bytes(3), num_frames=8)
    assert frames.shape[0] == 8
    bar = (frames[..., 0] > 128).sum(dim=(1, 2))
    assert torch.all(bar[1:] >= bar[:-1]) and len(set(bar.tolist())) == 3


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"\x00\x00\x00\x18ftypmp42 not really a video" * 4, "cannot read video"),
])
def test_decode_video_bad(data, match):
    with pytest.raises(ValueError, match=match):
        decode_video(data, num_frames=4)


def test_decode_video_truncated():
    data = mp4_bytes(8)
    with pytest.raises(ValueError):
        decode_video(data[: len(data) // 3], num_frames=4)


def test_decode_video_zero_frames():
    import av

    buf = io.BytesIO()  # a well-formed mp4 whose video stream got no frames
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    assert buf.getvalue()
    with pytest.raises(ValueError, match="0 frames|no video stream"):
        decode_video(buf.getvalue(), num_frames=4)


def test_decode_video_over_frame_limit():
    with pytest.raises(ValueError, match="max_frame_pixels"):
        decode_video(mp4_bytes(4, size=64), num_frames=2, max_frame_pixels=32 * 32)


def test_decode_video_missing_path(tmp_path):
    with pytest.raises(ValueError, match="no such video"):
        decode_video(tmp_path / "nope.mp4", num_frames=2)
