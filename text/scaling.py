"""Scaling laws as in Llama 3 (llama3-spec §1.3 "Scaling-law method"): IsoFLOP parabolas, the
compute-optimal token power law N*(C) = A·C^α, the parameter count that spends C on those tokens,
and the two-step downstream predictor (FLOPs → normalised NLL → accuracy).

Everything here is numpy on plain records; the sweep that produces the records is
`text/scaling_sweep.py`, the commands `text/scaling_cli.py`.

    fits = fit_isoflops(records)                    # one parabola per budget
    law = fit_power_law(fits)                       # (α, A) of tokens vs FLOPs
    predict_tokens(3.8e25, 0.53, 0.29)              # ≈ 1.05e13
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from text.config import TextConfig


@dataclass(frozen=True)
class IsoFlopFit:
    """The parabola loss = a·x² + b·x + c, x = log10(training tokens), of one compute budget."""

    flops: float
    coefficients: tuple[float, float, float]
    tokens_opt: float
    """Tokens at the parabola's minimum (clamped to the runs' range when the parabola opens down)."""
    loss_opt: float
    runs: int
    interior: bool
    """Whether the minimum lies inside the swept range (else it is an extrapolation)."""


@dataclass(frozen=True)
class PowerLaw:
    """tokens*(C) = A·C^α, fitted in log space over the per-budget optima."""

    alpha: float
    A: float

    def __call__(self, flops: float) -> float:
        return predict_tokens(flops, self.alpha, self.A)


def fit_isoflops(records: Sequence[dict]) -> list[IsoFlopFit]:
    """One parabola in log10(tokens) per distinct `flops` budget (≥ 3 runs each)."""
    fits = []
    for budget in sorted({r["budget"] for r in records}):
        runs = [r for r in records if r["budget"] == budget]
        if len(runs) < 3:
            raise ValueError(f"budget {budget:.3g} has {len(runs)} runs; a parabola needs at least 3")
        x = np.log10([r["tokens"] for r in runs])
        y = np.array([r["val_loss"] for r in runs])
        a, b, c = np.polyfit(x, y, 2)
        interior = a > 0 and x.min() <= -b / (2 * a) <= x.max()
        x_opt = -b / (2 * a) if a > 0 else x[np.argmin(y)]
        x_opt = float(np.clip(x_opt, x.min(), x.max()))
        fits.append(IsoFlopFit(flops=float(budget), coefficients=(float(a), float(b), float(c)),
                               tokens_opt=10 ** x_opt, loss_opt=float(np.polyval([a, b, c], x_opt)),
                               runs=len(runs), interior=bool(interior)))
    return fits


def fit_power_law(fits: Sequence[IsoFlopFit]) -> PowerLaw:
    """Least squares of log10(tokens*) = log10(A) + α·log10(C) over the budgets."""
    if len(fits) < 2:
        raise ValueError("a power law needs optima at two or more budgets")
    alpha, log_a = np.polyfit(np.log10([f.flops for f in fits]), np.log10([f.tokens_opt for f in fits]), 1)
    return PowerLaw(alpha=float(alpha), A=float(10 ** log_a))


@dataclass(frozen=True)
class HeldOutCheck:
    """A budget left out of the fit: what the fit predicts for it against what its runs measured."""

    flops: float
    tokens_predicted: float
    """N*(C) of the power law fitted without this budget."""
    loss_predicted: float
    """The best loss at C from a straight line of the fitted budgets' best losses vs log10 C."""
    tokens_measured: float
    """The held-out runs' own optimum (their parabola; the best run when fewer than 3 or at the edge)."""
    loss_measured: float

    @property
    def tokens_ratio(self) -> float:
        return self.tokens_predicted / self.tokens_measured


def check_held_out(records: Sequence[dict], held_out: Sequence[float]) -> tuple[PowerLaw, list[IsoFlopFit],
                                                                              list[HeldOutCheck]]:
    """Fit the IsoFLOP parabolas and the power law on every budget except `held_out`, then predict
    each held-out budget's compute-optimal tokens and loss and compare them with its runs."""
    held = {float(c) for c in held_out}
    fitted = [r for r in records if float(r["budget"]) not in held]
    fits = fit_isoflops(fitted)
    law = fit_power_law(fits)
    slope, intercept = np.polyfit(np.log10([f.flops for f in fits]), [f.loss_opt for f in fits], 1)
    checks = []
    for budget in sorted(held):
        runs = [r for r in records if float(r["budget"]) == budget]
        if not runs:
            raise ValueError(f"no runs at the held-out budget {budget:.3g}")
        best = min(runs, key=lambda r: r["val_loss"])
        tokens, loss = float(best["tokens"]), float(best["val_loss"])
        if len(runs) >= 3:
            (own,) = fit_isoflops(runs)
            if own.interior:
                tokens, loss = own.tokens_opt, own.loss_opt
        checks.append(HeldOutCheck(flops=budget, tokens_predicted=law(budget),
                                   loss_predicted=float(slope * math.log10(budget) + intercept),
                                   tokens_measured=tokens, loss_measured=loss))
    return law, fits, checks


def predict_tokens(flops: float, alpha: float, A: float) -> float:
    """Compute-optimal training tokens N*(C) = A·C^α."""
    return A * flops ** alpha


def params_for_budget(flops: float, tokens: float, config: TextConfig | None = None,
                      seq_len: int = 8192) -> float:
    """Matmul parameters N with C = (6·N + 6·L·d·T)·D, herd's FLOP formula (`text.accounting`).

    The attention term needs a shape (layers L, width d); without `config` it is left out (6·N·D).
    """
    per_token = flops / tokens
    if config is not None:
        per_token -= 6 * config.n_layers * config.dim * seq_len
    return per_token / 6


def sensitivity(flops: float, alpha: float, A: float, *, delta: float = 0.005,
                config: TextConfig | None = None, seq_len: int = 8192) -> list[dict]:
    """Tokens and parameters for α − delta, α, α + delta: how much a rounded α moves the answer."""
    rows = []
    for a in (alpha - delta, alpha, alpha + delta):
        tokens = predict_tokens(flops, a, A)
        rows.append({"alpha": a, "tokens": tokens, "params_6nd": params_for_budget(flops, tokens),
                     "params": params_for_budget(flops, tokens, config, seq_len)})
    return rows


def alpha_for_tokens(flops: float, tokens: float, A: float) -> float:
    """The α that makes A·C^α equal `tokens` (e.g. the paper's 16.55T at 3.8e25 with A = 0.29)."""
    return math.log(tokens / A) / math.log(flops)


# ----------------------------------------------------------------------------- downstream (two-step)


@dataclass(frozen=True)
class DownstreamLaw:
    """Step 1: nll = slope·log10(C) + intercept. Step 2: acc = lo + (hi − lo)·σ(−k·(nll − x0))."""

    slope: float
    intercept: float
    lo: float
    hi: float
    k: float
    x0: float

    def nll(self, flops: float) -> float:
        return self.slope * math.log10(flops) + self.intercept

    def accuracy_from_nll(self, nll: float) -> float:
        return self.lo + (self.hi - self.lo) / (1 + math.exp(self.k * (nll - self.x0)))

    def accuracy(self, flops: float) -> float:
        return self.accuracy_from_nll(self.nll(flops))


def fit_downstream(flops: Sequence[float], nll: Sequence[float], nll_all: Sequence[float],
                   acc_all: Sequence[float]) -> DownstreamLaw:
    """Fit step 1 on the compute-optimal runs (flops, nll) and step 2 on every run (nll, accuracy),
    as the paper does (it adds Llama 2 models to step 2 for more points)."""
    from scipy.optimize import curve_fit

    if len(flops) < 2 or len(nll_all) < 4:
        raise ValueError(f"the two-step fit needs ≥ 2 budgets and ≥ 4 runs; got {len(flops)} and {len(nll_all)}")
    slope, intercept = np.polyfit(np.log10(flops), nll, 1)
    x, y = np.asarray(nll_all, float), np.asarray(acc_all, float)

    def sigmoid(v, lo, hi, k, x0):
        return lo + (hi - lo) / (1 + np.exp(k * (v - x0)))

    start = (0.0, max(y.max() * 1.2, 1e-3), 2.0, float(np.median(x)))
    (lo, hi, k, x0), _ = curve_fit(sigmoid, x, y, p0=start, bounds=([0, 0, 0, -np.inf], [1, 1, 100, np.inf]),
                                   maxfev=20_000)
    return DownstreamLaw(slope=float(slope), intercept=float(intercept), lo=float(lo), hi=float(hi), k=float(k),
                         x0=float(x0))


def plot_isoflops(records: Sequence[dict], fits: Sequence[IsoFlopFit], law: PowerLaw, path) -> None:
    """Left: loss vs tokens per budget with its parabola; right: the optima and the power law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for fit in fits:
        runs = sorted((r for r in records if r["budget"] == fit.flops), key=lambda r: r["tokens"])
        x = np.log10([r["tokens"] for r in runs])
        line = left.plot(10 ** x, [r["val_loss"] for r in runs], "o", label=f"{fit.flops:.0e} FLOPs")[0]
        grid = np.linspace(x.min() - 0.1, x.max() + 0.1, 50)
        left.plot(10 ** grid, np.polyval(fit.coefficients, grid), "-", color=line.get_color(), alpha=0.6)
        left.plot([fit.tokens_opt], [fit.loss_opt], "*", color=line.get_color(), markersize=12)
    left.set(xscale="log", xlabel="training tokens", ylabel="validation loss", title="IsoFLOP curves")
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decade labels only: no overlap
    left.legend(fontsize=8)
    c = np.array([f.flops for f in fits])
    right.plot(c, [f.tokens_opt for f in fits], "o", label="per-budget optimum")
    grid = np.geomspace(c.min() / 2, c.max() * 4, 20)
    right.plot(grid, [law(g) for g in grid], "-", label=f"N*(C) = {law.A:.3g}·C^{law.alpha:.3f}")
    right.set(xscale="log", yscale="log", xlabel="compute (FLOPs)", ylabel="compute-optimal tokens",
              title="Power law")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["IsoFlopFit", "PowerLaw", "HeldOutCheck", "DownstreamLaw", "fit_isoflops", "fit_power_law",
           "check_held_out", "predict_tokens",
           "params_for_budget", "sensitivity", "alpha_for_tokens", "fit_downstream", "plot_isoflops"]
