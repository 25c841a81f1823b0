"""The caption-word head and its loss (video.word_head): hand-computed values and the LM's output
table as reader. Its place in the video model is tested in tests/adapters/test_video_fusion.py."""

import math

import pytest
import torch
from torch import nn

from video.word_head import CaptionWordHead, caption_word_loss


def test_loss_is_the_mean_negative_log_probability_of_the_reply_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25, 0.0 + 1e-30], [0.1, 0.2, 0.3, 0.4]]))
    targets = torch.tensor([[-100, 0, 1, -100], [3, 3, -100, -100]])
    expected = (-math.log(0.5) - math.log(0.25) - 2 * math.log(0.4)) / 4
    assert caption_word_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_tokens_outside_the_output_table_and_rows_without_reply_count_for_nothing():
    logits = torch.zeros(2, 4)
    targets = torch.tensor([[9, 2], [-100, -100]])  # 9: a new-token row the output table lacks
    assert caption_word_loss(logits, targets).item() == pytest.approx(math.log(4))
    assert caption_word_loss(logits, torch.full((2, 2), -100)).item() == 0.0


def test_word_logits_are_the_max_over_latents_read_by_the_given_norm_and_table():
    torch.manual_seed(0)
    head, norm, table = CaptionWordHead(8), nn.RMSNorm(8), nn.Linear(8, 5, bias=False)
    latents = torch.randn(3, 4, 8)
    expected = torch.stack([table(norm(head.proj(latents[:, j]))) for j in range(4)], 1).amax(1)
    assert torch.allclose(head(latents, norm, table), expected)
