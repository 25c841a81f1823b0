"""Exact parameter counts of the paper presets (built on the meta device) and the training-FLOP
estimate behind `herd model info`."""

from __future__ import annotations

import pytest
import torch

from herd.cli import main
from text.accounting import count_parameters, training_flops
from text.config import create_config, list_presets
from text.model import Transformer

PAPER_COUNTS = {"8B": 8_030_261_248, "70B": 70_553_706_496, "405B": 405_853_388_800}


@pytest.mark.parametrize("preset", sorted(PAPER_COUNTS))
def test_paper_presets_have_the_exact_parameter_counts_on_meta(preset):
    with torch.device("meta"):
        model = Transformer(create_config(preset))
    params = list(model.parameters())
    assert all(p.is_meta for p in params)  # nothing was allocated
    assert sum(p.numel() for p in params) == PAPER_COUNTS[preset]
    assert count_parameters(create_config(preset)).total == PAPER_COUNTS[preset]


@pytest.mark.parametrize("preset", list_presets())
def test_counts_split_into_embedding_and_the_rest(preset):
    config = create_config(preset)
    size = count_parameters(config)
    assert size.non_embedding == size.total - 2 * config.vocab_size * config.dim
    assert size.matmul == size.total - config.vocab_size * config.dim


def test_tiny_count_matches_a_real_model():
    model = Transformer(create_config("tiny"))
    assert count_parameters(create_config("tiny")).total == sum(p.numel() for p in model.parameters())


def test_405B_training_flops_land_within_5_percent_of_the_paper():
    flops = training_flops(create_config("405B"), 15.6e12)
    assert abs(flops / 3.8e25 - 1) < 0.05
    # 6·N·D alone is below the paper's figure; the attention term closes part of the gap.
    assert 6 * count_parameters(create_config("405B")).matmul * 15.6e12 < flops


def test_model_info_cli_prints_counts_and_flops(capsys):
    assert main(["model", "info", "--preset", "405B", "--tokens", "15.6e12"]) == 0
    out = capsys.readouterr().out
    assert "405,853,388,800" in out
    assert "non-embedding" in out
    flops_line = next(line for line in out.splitlines() if line.startswith("training FLOPs"))
    flops = float(flops_line.split()[2])
    assert abs(flops / 3.8e25 - 1) < 0.05


@pytest.mark.parametrize("preset", ["8B", "70B"])
def test_model_info_cli_other_presets(capsys, preset):
    assert main(["model", "info", "--preset", preset]) == 0
    assert f"{PAPER_COUNTS[preset]:,}" in capsys.readouterr().out


def test_model_info_rejects_an_unknown_preset(capsys):
    assert main(["model", "info", "--preset", "3B"]) != 0
    err = capsys.readouterr().err
    assert "unknown text preset" in err and len(err.strip().splitlines()) == 1
