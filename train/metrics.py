"""Run metrics: `metrics.jsonl` (one JSON object per logged step), TensorBoard event files, and
the loss-curve PNG written beside them. Rank 0 only; the loop averages over ranks first."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class MetricsLogger:
    """Appends to RUN/metrics.jsonl and RUN/tensorboard/; a resumed run first drops the rows
    past its checkpoint so the file reads as one uninterrupted run."""

    def __init__(self, run: str | Path, *, enabled: bool = True, resume_step: int = 0):
        self.run = Path(run)
        self.enabled = enabled
        self.path = self.run / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        self.run.mkdir(parents=True, exist_ok=True)
        rows = read_metrics(self.path) if self.path.is_file() else []
        kept = [r for r in rows if r.get("step", 0) <= resume_step] if resume_step else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run / "tensorboard"), purge_step=resume_step + 1)
        except ImportError:  # tensorboard is an extra (herd[train])
            print("herd train: tensorboard not installed; metrics go to metrics.jsonl only", file=sys.stderr)

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if self.enabled:
            plot_losses(self.path, self.run / PLOT_FILE)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is dropped too
    return rows


def plot_losses(metrics: str | Path, out: str | Path, *, title: str | None = None) -> Path | None:
    """Training loss (and validation loss where logged) against step, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or Path(metrics).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


__all__ = ["MetricsLogger", "read_metrics", "plot_losses", "METRICS_FILE", "PLOT_FILE"]
