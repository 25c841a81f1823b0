"""The log-mel front end: any format, rate and channel count → 16 kHz mono → 80-dim frames at 10 ms."""

import io
import math

import numpy as np
import pytest
import soundfile
import torch

from speech.config import FeatureConfig
from speech.features import LogMelFrontEnd, load_audio, load_features, num_frames, to_mono

DURATION = 0.5  # seconds; 8000 samples at 16 kHz → 8000 // 160 + 1 = 51 frames


def _tone(rate: int, channels: int, seconds: float = DURATION) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def frontend():
    return LogMelFrontEnd(FeatureConfig())


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_file_gives_16k_mono_log_mel(tmp_path, frontend, fmt, rate, channels):
    path = tmp_path / f"a.{fmt}"
    soundfile.write(path, _tone(rate, channels), rate, format=fmt.upper() if fmt != "ogg" else "OGG")
    wave, sr = load_audio(path)
    assert (sr, wave.shape[0]) == (rate, channels)
    mono = to_mono(wave, sr)
    assert mono.dim() == 1 and mono.shape[0] == 8000
    feats, lengths = load_features([path], frontend)
    assert feats.shape == (1, 51, 80) and lengths.tolist() == [51]
    assert torch.isfinite(feats).all()
    # per-utterance normalisation: zero mean, unit variance per mel bin
    assert feats[0].mean(0).abs().max() < 1e-4
    assert (feats[0].std(0, unbiased=False) - 1).abs().max() < 1e-2


def test_bytes_and_file_objects_decode(tmp_path):
    buf = io.BytesIO()
    soundfile.write(buf, _tone(16_000, 1), 16_000, format="FLAC")
    wave, sr = load_audio(buf.getvalue())
    assert sr == 16_000 and wave.shape == (1, 8000)


@pytest.mark.parametrize("ext, codec", [("mp3", "libmp3lame"), ("m4a", "aac")])
def test_compressed_formats_through_pyav(tmp_path, frontend, ext, codec):
    av = pytest.importorskip("av")
    path = tmp_path / f"a.{ext}"
    try:
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=22_050, layout="stereo")
            frame = av.AudioFrame.from_ndarray(_tone(22_050, 2).T.copy(), format="fltp", layout="stereo")
            frame.rate = 22_050
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except Exception as e:  # this FFmpeg build has no such encoder
        pytest.skip(f"cannot write {ext}: {e}")
    wave, sr = load_audio(path)
    assert sr == 22_050 and wave.shape[0] == 2
    assert abs(wave.shape[1] - round(22_050 * DURATION)) < 3000  # codec priming/padding
    feats, lengths = load_features([path.read_bytes()], frontend)
    assert feats.shape[-1] == 80 and abs(lengths.item() - 51) <= 20


@pytest.mark.parametrize("n_samples", [1, 159, 160, 400, 16_000, 16_123])
def test_frame_count_is_samples_over_hop_plus_one(frontend, n_samples):
    feats, lengths = frontend([torch.randn(n_samples)])
    assert lengths.item() == num_frames(n_samples) == n_samples // 160 + 1 == feats.shape[1]


def test_batch_equals_single_utterances(frontend):
    waves = [torch.randn(n) for n in (3200, 16_000, 800)]
    feats, lengths = frontend(waves)
    assert lengths.tolist() == [21, 101, 6]
    for i, w in enumerate(waves):
        alone, _ = frontend([w])
        assert torch.equal(feats[i, : lengths[i]], alone[0])
        assert (feats[i, lengths[i]:] == 0).all()
    assert math.isclose(FeatureConfig().hop_ms * 4, 40.0)
