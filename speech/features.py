"""The speech front end (llama3-spec §5.2): any audio → 16 kHz mono → 80-dim log-mel (25 ms window,
10 ms hop) → per-utterance mean/variance normalisation.

    wave, sr = load_audio("u.flac")                 # [channels, samples], native rate
    frontend = LogMelFrontEnd(FeatureConfig())
    feats, lengths = frontend([to_mono(wave, sr)])  # [B, T, 80], [B]; T = samples // 160 + 1

soundfile reads wav/flac/ogg (and mp3 where libsndfile can); PyAV decodes everything else.
Features are computed one utterance at a time, so a padded batch holds exactly the features each
utterance gets alone (padding is zero).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from speech.config import FeatureConfig

AudioSource = str | Path | bytes | BinaryIO


def load_audio(source: AudioSource) -> tuple[Tensor, int]:
    """Decode a file, its bytes or a file object → (waveform [channels, samples] float32, rate)."""
    import soundfile

    data = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        samples, rate = soundfile.read(data, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(samples.T)), int(rate)
    except soundfile.LibsndfileError:
        if hasattr(data, "seek"):
            data.seek(0)
        return _load_with_av(data)


def _load_with_av(source: str | Path | BinaryIO) -> tuple[Tensor, int]:
    """Decode any container/codec FFmpeg knows (mp3, m4a, opus, video soundtracks)."""
    import av

    with av.open(str(source) if isinstance(source, Path) else source) as container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in {source!r}")
        stream = container.streams.audio[0]
        planar = av.AudioResampler(format="fltp")  # float32, one row per channel
        chunks = [frame.to_ndarray()
                  for packet in container.demux(stream) for decoded in packet.decode()
                  for frame in planar.resample(decoded)]
        chunks += [frame.to_ndarray() for frame in planar.resample(None)]
        rate = stream.rate
    if not chunks:
        raise ValueError(f"no audio samples decoded from {source!r}")
    return torch.from_numpy(np.concatenate(chunks, axis=1)), int(rate)


def to_mono(wave: Tensor, sample_rate: int, target_rate: int = 16_000) -> Tensor:
    """[channels, samples] or [samples] at any rate → [samples'] mono float32 at target_rate."""
    wave = wave.float()
    if wave.dim() == 2:
        wave = wave.mean(dim=0)
    if sample_rate != target_rate:
        wave = torchaudio.functional.resample(wave, sample_rate, target_rate)
    return wave


def num_frames(n_samples: int | Tensor, config: FeatureConfig = FeatureConfig()) -> int | Tensor:
    """Log-mel frames for n_samples at config.sample_rate (centred frames: n // hop + 1)."""
    return n_samples // config.hop_length + 1


class LogMelFrontEnd(nn.Module):
    """16 kHz waveforms → normalised log-mel features [B, T, n_mels] and lengths [B]."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate, n_fft=config.win_length, win_length=config.win_length,
            hop_length=config.hop_length, n_mels=config.n_mels)

    def log_mel(self, wave: Tensor) -> Tensor:
        """One waveform [samples] → normalised log-mel [frames, n_mels]."""
        n = wave.shape[-1]
        min_len = self.config.win_length // 2 + 1  # centred frames reflect-pad by win/2
        if n < min_len:
            wave = torch.nn.functional.pad(wave, (0, min_len - n))
        feats = torch.log(self.mel(wave.float()) + self.config.log_floor).T  # [T, n_mels]
        return normalize(feats[: num_frames(n, self.config)])

    @torch.no_grad()
    def forward(self, waves: list[Tensor]) -> tuple[Tensor, Tensor]:
        """A list of 16 kHz mono waveforms → (features [B, T_max, n_mels], lengths [B] int64)."""
        feats = [self.log_mel(w) for w in waves]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        return nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths


def normalize(feats: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance normalisation: zero mean, unit variance per mel bin over time.

    BEST-RQ's random-projection targets rely on it (Chiu et al. 2022 §3.1: without it the
    quantizer collapses onto a few codes).
    """
    mean = feats.mean(dim=0, keepdim=True)
    std = feats.std(dim=0, unbiased=False, keepdim=True)
    return (feats - mean) / (std + eps)


def load_features(sources: list[AudioSource], frontend: LogMelFrontEnd) -> tuple[Tensor, Tensor]:
    """Decode, resample and featurise audio files → (features [B, T, n_mels], lengths [B])."""
    rate = frontend.config.sample_rate
    return frontend([to_mono(*load_audio(s), target_rate=rate) for s in sources])


__all__ = ["load_audio", "to_mono", "num_frames", "LogMelFrontEnd", "normalize", "load_features"]
