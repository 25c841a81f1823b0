"""Augmentations: SpecAugment stays inside each utterance; speed and band limits behave."""

import torch

from speech.augment import BandLimit, SpecAugment, SpeedPerturb


def test_specaugment_masks_valid_frames_only():
    torch.manual_seed(0)
    aug = SpecAugment(n_freq_masks=2, freq_mask_param=10, n_time_masks=4, time_mask_param=20,
                      max_time_fraction=0.2).train()
    feats = torch.randn(2, 100, 80) + 3.0
    lengths = torch.tensor([100, 60])
    out = aug(feats, lengths)
    assert torch.equal(out[1, 60:], feats[1, 60:])  # padding untouched
    for i, n in enumerate(lengths.tolist()):
        assert (out[i, :n] == 0).any() and not torch.equal(out[i, :n], feats[i, :n])
    assert torch.equal(aug.eval()(feats, lengths), feats)


def test_speed_perturbation_changes_length_by_the_factor():
    torch.manual_seed(0)
    wave = torch.randn(16_000)
    slow = SpeedPerturb(factors=[0.9]).train()(wave)
    fast = SpeedPerturb(factors=[1.1]).train()(wave)
    assert abs(slow.shape[0] - 16_000 / 0.9) <= 2 and abs(fast.shape[0] - 16_000 / 1.1) <= 2
    assert torch.equal(SpeedPerturb(factors=[0.9]).eval()(wave), wave)


def test_band_limit_removes_high_frequencies_and_keeps_length():
    torch.manual_seed(0)
    t = torch.arange(16_000) / 16_000
    wave = torch.sin(2 * torch.pi * 300 * t) + torch.sin(2 * torch.pi * 6000 * t)
    out = BandLimit(rates=[8_000], prob=1.0).train()(wave)
    assert out.shape == wave.shape
    spectrum = torch.fft.rfft(out).abs()
    assert spectrum[6000] < 0.05 * spectrum[300]
