"""Training augmentations for the speech path, all from torchaudio.

- `SpecAugment` (Park et al. 2019) on padded log-mel batches: frequency and time masks drawn per
  utterance inside its valid frames only, time masks capped at a fraction of the utterance.
- `SpeedPerturb`: resample-based speed change (0.9/1.0/1.1 as in Ko et al. 2015).
- `BandLimit`: down- and up-sampling through a random lower rate, so the model hears telephone-
  and low-bitrate-like audio.

Randomness comes from torch's global generator (seeded by the training loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor, nn


class SpecAugment(nn.Module):
    """Masks on normalised log-mel [B, T, F] with lengths [B]; masked values become 0 (the mean)."""

    def __init__(self, *, n_freq_masks: int = 2, freq_mask_param: int = 27, n_time_masks: int = 10,
                 time_mask_param: int = 40, max_time_fraction: float = 0.05):
        super().__init__()
        self.transform = torchaudio.transforms.SpecAugment(
            n_time_masks=n_time_masks, time_mask_param=time_mask_param, n_freq_masks=n_freq_masks,
            freq_mask_param=freq_mask_param, iid_masks=False, p=max_time_fraction, zero_masking=True)

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        if not self.training:
            return feats
        out = feats.clone()
        for i, n in enumerate(lengths.tolist()):
            # torchaudio masks [..., freq, time]; restricting to :n keeps masks off the padding
            # and sizes the adaptive time masks by this utterance's own length.
            out[i, :n] = self.transform(feats[i, :n].T).T
        return out


class SpeedPerturb(nn.Module):
    """A 16 kHz waveform [samples] → the same audio played at a random factor (length / factor)."""

    def __init__(self, sample_rate: int = 16_000, factors: Sequence[float] = (0.9, 1.0, 1.1)):
        super().__init__()
        self.transform = torchaudio.transforms.SpeedPerturbation(sample_rate, list(factors))

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training:
            return wave
        out, _ = self.transform(wave)
        return out


class BandLimit(nn.Module):
    """Keep only frequencies below rate/2 for a random rate in `rates` (8 kHz = telephone band)."""

    def __init__(self, sample_rate: int = 16_000, rates: Sequence[int] = (8_000, 11_025),
                 prob: float = 0.3):
        super().__init__()
        self.sample_rate, self.rates, self.prob = sample_rate, list(rates), prob

    def forward(self, wave: Tensor) -> Tensor:
        if not self.training or float(torch.rand(())) >= self.prob:
            return wave
        low = self.rates[int(torch.randint(len(self.rates), ()))]
        narrow = torchaudio.functional.resample(wave, self.sample_rate, low)
        out = torchaudio.functional.resample(narrow, low, self.sample_rate)
        # resampling may round the length by a sample; keep the original length
        return torch.nn.functional.pad(out, (0, max(0, wave.shape[-1] - out.shape[-1])))[..., :wave.shape[-1]]


__all__ = ["SpecAugment", "SpeedPerturb", "BandLimit"]
