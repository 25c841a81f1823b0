"""The time-odd motion summary (video/motion.py) and its place in the aggregator."""

from __future__ import annotations

import math

import pytest
import torch

from video.config import create_config
from video.motion import MotionSummary
from video.resampler import build_aggregator

DIM, GRID = 16, 4
TOKENS = 1 + GRID * GRID  # one tile: class token + 4×4 patches


def _summary(seed: int = 0) -> MotionSummary:
    torch.manual_seed(seed)
    return MotionSummary(dim=DIM, width=8, grid=GRID).eval()


def _frames(batch: int, n_frames: int, tiles: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, n_frames, tiles * TOKENS, DIM, generator=torch.Generator().manual_seed(seed))


def test_a_still_clip_gives_zero_and_a_reversed_clip_the_opposite():
    motion = _summary()
    frames = _frames(2, 6)
    with torch.no_grad():
        out = motion(frames)
        assert out.shape == (2, DIM) and out.abs().max() > 1e-3
        assert torch.allclose(motion(frames.flip(1)), -out, atol=1e-6)
        still = frames[:, :1].expand(-1, 6, -1, -1)
        assert torch.equal(motion(still), torch.zeros(2, DIM))
        assert torch.equal(motion(frames[:, :1]), torch.zeros(2, DIM))  # one frame: no pair, no motion


def test_padding_frames_are_left_out():
    motion = _summary()
    frames = _frames(1, 8)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[:, :5] = True
    garbage = frames.clone()
    garbage[:, 5:] = 1e3 * torch.randn_like(garbage[:, 5:])
    with torch.no_grad():
        assert torch.allclose(motion(garbage, mask), motion(frames[:, :5]), atol=1e-6)


def test_tiles_are_read_apart_and_averaged():
    motion = _summary()
    frames = _frames(1, 4, tiles=2)
    with torch.no_grad():
        both = motion(frames)
        alone = [motion(frames[:, :, i * TOKENS:(i + 1) * TOKENS]) for i in range(2)]
    assert torch.allclose(both, (alone[0] + alone[1]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="whole tiles"):
        motion(frames[:, :, :-1])


def test_config_needs_the_patch_grid_and_the_aggregator_adds_the_summary_to_its_queries():
    with pytest.raises(ValueError, match="patch_grid"):
        create_config("tiny", dim=DIM, motion_dim=8)
    torch.manual_seed(0)
    agg = build_aggregator(create_config("tiny", dim=DIM, dim_head=8, motion_dim=8, patch_grid=GRID)).eval()
    frames = _frames(1, 8)
    with torch.no_grad():
        out = agg(frames)
        agg.resampler.motion.out.weight.zero_()
        assert not torch.allclose(agg(frames), out, atol=1e-4)
    assert build_aggregator(create_config("tiny", dim=DIM)).resampler.motion is None  # the reference


def _turning_bars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n clips of a bar through the centre of an 8×8 grid, turning 20–30° per frame over 5 frames
    in a random direction, as one-hot-ish "patch tokens" (bar = feature 0, background = feature 1);
    label 1 = counterclockwise."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(8.0) - 3.5, torch.arange(8.0) - 3.5, indexing="ij")
    clips, labels = [], torch.randint(0, 2, (n,), generator=g)
    for label in labels:
        start = torch.rand((), generator=g) * math.pi
        step = math.radians(20 + 10 * torch.rand((), generator=g).item()) * (1 if label else -1)
        frames = []
        for t in range(5):
            a = start + step * t  # distance of each cell from the bar's axis
            on = ((xs * math.sin(a) - ys * math.cos(a)).abs() < 0.8).float().flatten()
            tokens = torch.zeros(1 + 64, DIM)
            tokens[1:, 0], tokens[1:, 1] = on, 1 - on
            frames.append(tokens)
        clips.append(torch.stack(frames))
    return torch.stack(clips), labels


def test_learns_which_way_a_bar_turns():
    """The product of two frames that attention pooling misses: a linear read of the summary
    learns the turn direction of unseen clips."""
    torch.manual_seed(0)
    motion = MotionSummary(dim=DIM, width=8, grid=8)
    head = torch.nn.Linear(DIM, 2)
    opt = torch.optim.Adam([*motion.parameters(), *head.parameters()], lr=1e-2)
    train, train_y = _turning_bars(256, seed=1)
    test, test_y = _turning_bars(128, seed=2)
    for step in range(150):
        i = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(step))
        loss = torch.nn.functional.cross_entropy(head(motion(train[i])), train_y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (head(motion(test)).argmax(-1) == test_y).float().mean().item()
    assert accuracy > 0.9, accuracy
