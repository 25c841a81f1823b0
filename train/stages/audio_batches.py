"""Batches of utterances for the two speech stages, read from shards built by `data/build_speech.py`
(sample keys `flac` and `json` {"text", "voice", "accent", "engine", "speaker", …}).

Each utterance is decoded, resampled to 16 kHz mono, optionally augmented as a waveform (speed
perturbation, band-limiting: speech/augment.py), turned into normalised log-mel features one at a
time (so a padded batch holds exactly what each utterance gets alone), and padded:

    {"feats": [B, T, 80] float32, "feat_lengths": [B] int64, "texts": list[str], "info": list[dict]}

SpecAugment, when given, is applied to the padded features inside each utterance's valid frames.
Reading goes through `data.shards.ShardReader` with no buffer, so its state_dict is the position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from torch import nn

from speech.augment import SpecAugment
from speech.features import LogMelFrontEnd, load_audio, to_mono


def decode_utterance(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw shard sample → {"key", "wave": [samples] 16 kHz mono, "text", "info": the json}; corrupt
    audio raises ValueError (the reader skips it with a warning naming shard and key)."""
    import soundfile

    for key in ("flac", "json"):
        if key not in sample:
            raise KeyError(key)
    info = json.loads(sample["json"])
    try:
        wave, rate = load_audio(sample["flac"])
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"undecodable flac: {err}") from None
    if "text" not in info:
        raise KeyError("json.text")
    return {"key": sample.get("__key__", ""), "wave": to_mono(wave, rate), "text": info["text"], "info": info}


class AudioBatcher:
    """Padded log-mel batches of one reader slot (rank) of a speech shard list."""

    def __init__(self, shards: Sequence[Path], *, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epochs: int | None = None, shuffle: bool = True,
                 wave_augment: nn.Module | None = None, spec_augment: SpecAugment | None = None,
                 frontend: LogMelFrontEnd | None = None):
        from data.shards import ShardReader

        self.batch_size = batch_size
        self.wave_augment, self.spec_augment = wave_augment, spec_augment
        self.frontend = frontend or LogMelFrontEnd()
        self.reader = ShardReader(shards, slot=rank, num_slots=world_size, seed=seed, shuffle=shuffle,
                                  epochs=epochs, decode=decode_utterance, required=("flac", "json"))

    def featurize(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        waves = [s["wave"] for s in samples]
        if self.wave_augment is not None:
            waves = [self.wave_augment(w) for w in waves]
        feats, lengths = self.frontend(waves)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, lengths)
        return {"feats": feats, "feat_lengths": lengths, "texts": [s["text"] for s in samples],
                "info": [s["info"] for s in samples]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            samples = []
            for sample in self.reader:
                samples.append(sample)
                if len(samples) == self.batch_size:
                    break
            if not samples:
                return
            yield self.featurize(samples)

    def state_dict(self) -> dict[str, Any]:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reader.load_state_dict(state)


def training_augment(sample_rate: int = 16_000) -> nn.Module:
    """The waveform augmentation of both speech stages: speed 0.9/1.0/1.1, then 30% band-limited
    to 8 or 11 kHz sampling (robustness to voices, rates and telephone-like audio)."""
    from speech.augment import BandLimit, SpeedPerturb

    return nn.Sequential(SpeedPerturb(sample_rate), BandLimit(sample_rate)).train()



__all__ = ["decode_utterance", "AudioBatcher", "training_augment"]
