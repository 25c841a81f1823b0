"""Scaling-law tools: the paper's figures and their α sensitivity, IsoFLOP fits recovering a known
power law, the two-step downstream fit, and the `herd scaling` CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from herd.cli import main as herd
from text.scaling import (alpha_for_tokens, check_held_out, fit_downstream, fit_isoflops, fit_power_law, params_for_budget,
                          predict_tokens, sensitivity)

PAPER_FLOPS = 3.8e25


def test_paper_constants_and_their_rounding():
    assert predict_tokens(PAPER_FLOPS, 0.53, 0.29) == pytest.approx(10.5e12, rel=0.01)
    assert alpha_for_tokens(PAPER_FLOPS, 16.55e12, 0.29) == pytest.approx(0.538, abs=0.0005)
    # 6·N·D alone at the paper's 16.55T tokens gives ≈382B parameters, not 402B
    assert params_for_budget(PAPER_FLOPS, 16.55e12) == pytest.approx(382e9, rel=0.005)
    rows = sensitivity(PAPER_FLOPS, 0.53, 0.29)
    assert [r["alpha"] for r in rows] == pytest.approx([0.525, 0.53, 0.535])
    assert rows[0]["tokens"] < rows[1]["tokens"] < rows[2]["tokens"]
    assert rows[2]["tokens"] / rows[0]["tokens"] == pytest.approx(PAPER_FLOPS ** 0.01, rel=1e-9)


def test_predict_cli_prints_the_sensitivity(capsys):
    assert herd(["scaling", "predict", "--alpha", "0.53", "--A", "0.29", "--flops", "3.8e25", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[1]["tokens"] == pytest.approx(10.46e12, rel=0.005)
    assert rows[1]["params"] < rows[1]["params_6nd"]  # the attention term takes its share of C


def _synthetic_records(alpha: float, A: float) -> list[dict]:
    """Parabolic IsoFLOP curves whose minima lie exactly on tokens* = A·C^α."""
    records = []
    for budget in (1e11, 3e11, 1e12, 3e12):
        x_opt = math.log10(A * budget ** alpha)
        for dx in (-0.6, -0.3, 0.0, 0.3, 0.6):
            records.append({"budget": budget, "tokens": 10 ** (x_opt + dx),
                            "val_loss": 5.0 - 0.3 * math.log10(budget) + 0.8 * dx ** 2})
    return records


def test_isoflop_fit_recovers_a_known_power_law():
    fits = fit_isoflops(_synthetic_records(0.55, 0.4))
    assert all(f.interior for f in fits)
    law = fit_power_law(fits)
    assert law.alpha == pytest.approx(0.55, abs=1e-6) and law.A == pytest.approx(0.4, rel=1e-5)


def test_held_out_budget_is_predicted_from_the_others():
    records = _synthetic_records(0.55, 0.4)
    law, fits, (check,) = check_held_out(records, [3e12])
    assert [f.flops for f in fits] == [1e11, 3e11, 1e12]
    assert law.alpha == pytest.approx(0.55, abs=1e-6)
    assert check.tokens_ratio == pytest.approx(1.0, rel=1e-4)
    assert check.loss_predicted == pytest.approx(check.loss_measured, abs=1e-6)
    shifted = [dict(r, val_loss=r["val_loss"] + 0.5) if r["budget"] == 3e12 else r for r in records]
    assert check_held_out(shifted, [3e12])[2][0].loss_measured == pytest.approx(check.loss_measured + 0.5)


def test_isoflop_fit_needs_three_runs_per_budget():
    with pytest.raises(ValueError, match="at least 3"):
        fit_isoflops(_synthetic_records(0.5, 1.0)[:2])


def test_two_step_downstream_fit():
    flops = np.array([1e11, 3e11, 1e12, 3e12])
    nll = 9.0 - 0.5 * np.log10(flops)
    nll_all = np.linspace(2.0, 5.0, 12)
    acc_all = 0.05 + 0.6 / (1 + np.exp(3.0 * (nll_all - 3.5)))
    law = fit_downstream(flops, nll, nll_all, acc_all)
    assert law.slope == pytest.approx(-0.5) and law.intercept == pytest.approx(9.0)
    assert law.accuracy_from_nll(3.5) == pytest.approx(0.35, abs=0.01)
    assert law.accuracy(1e13) > law.accuracy(1e11)  # more compute → lower NLL → higher accuracy
