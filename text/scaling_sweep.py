"""IsoFLOP sweeps (llama3-spec §1.3): for every compute budget C and model size, train a
`text-pretrain` run whose token count spends exactly C under herd's FLOP formula
(`text.accounting.training_flops`), with the paper's recipe shape scaled down — cosine schedule,
warm-up a fixed fraction of the steps, decay to 0.1× peak, weight decay 0.1 × the current LR
(AdamW's decoupled decay), one fixed batch for every run — and record the validation loss and
next-token accuracy. One JSON line per run; a finished (budget, size) is never rerun.

    run_sweep(SweepPlan(budgets=[3e11, 1e12], sizes=["16x1", "24x1", "32x2"]), out=Path("runs/sweep"))
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text.config import TextConfig, create_config


@dataclass(kw_only=True)
class SweepPlan:
    budgets: list[float]
    """Training FLOPs per run (6·N·D + attention)."""
    sizes: list[str]
    """Model shapes "DIMxLAYERS" (heads of width 16, half as many KV heads)."""
    shards: str = "runs/demo/data/text"
    """Text shards: trains on `train`, validates on `validation` (the held-out novel)."""
    tokenizer: str | None = None
    """tokenizer.json to use; None: train a `vocab_size` BPE on the train shards into the sweep's
    folder. The default is small because at these budgets an 8K vocabulary's embedding and output
    tables would be most of every model's parameters and FLOPs, and the IsoFLOP minima would sit at
    the smallest size swept."""
    vocab_size: int = 1024
    seq_len: int = 128
    batch_size: int = 8
    """Fixed batch for every run: batch_size × seq_len tokens per step."""
    lr: float = 3e-3
    """Peak LR (the paper's 2e-4…4e-4 is for 40M–16B models; ours are ~100× smaller)."""
    warmup_fraction: float = 0.1
    """The paper's 2,000 warm-up steps, scaled down to this fraction of each run."""
    eval_batches: int = 8
    seed: int = 0
    extra: list[str] = field(default_factory=list)
    """More `section.key=value` overrides for every run (e.g. train.dtype=fp32)."""


def size_config(size: str, vocab_size: int, seq_len: int) -> TextConfig:
    """The text config of a sweep size "DIMxLAYERS" (the tiny preset's other choices)."""
    try:
        dim, layers = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {size!r} is not DIMxLAYERS (e.g. 64x2)") from None
    heads = max(1, dim // 16)
    return create_config("tiny", dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=max(1, heads // 2),
                         vocab_size=vocab_size, max_seq_len=max(seq_len, 256))


def plan_run(plan: SweepPlan, budget: float, size: str, vocab_size: int) -> dict[str, Any]:
    """Steps, tokens and FLOPs of one run (tokens rounded to whole steps)."""
    from text.accounting import count_parameters, training_flops

    config = size_config(size, vocab_size, plan.seq_len)
    per_step = plan.batch_size * plan.seq_len
    per_token = training_flops(config, 1, plan.seq_len)
    steps = max(1, round(budget / per_token / per_step))
    sizes = count_parameters(config)
    return {"budget": budget, "size": size, "dim": config.dim, "n_layers": config.n_layers,
            "params": sizes.total, "matmul_params": sizes.matmul, "steps": steps, "tokens": steps * per_step,
            "flops": per_token * steps * per_step}


def run_key(budget: float, size: str) -> str:
    return f"{budget:.2e}_{size}"


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_sweep(plan: SweepPlan, out: Path, *, log=print) -> list[dict]:
    """Train every missing (budget, size) run under `out/runs/`, appending to `out/results.jsonl`."""
    from text.tokenizer import load_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    done = {run_key(r["budget"], r["size"]) for r in read_results(results_path)}
    if plan.tokenizer is None:
        plan.tokenizer = str(sweep_tokenizer(plan, out, log))
    vocab = load_tokenizer(plan.tokenizer).vocab_size
    for budget in plan.budgets:
        for size in plan.sizes:
            key = run_key(budget, size)
            if key in done:
                log(f"{key}: done already")
                continue
            record = plan_run(plan, budget, size, vocab)
            run_dir = out / "runs" / key
            shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run restarts from scratch
            started = time.perf_counter()
            metrics = train_one(plan, record, run_dir)
            record.update(val_loss=metrics["val_loss"], val_acc=metrics["val_acc"],
                          train_loss=metrics.get("loss", math.nan),
                          seconds=round(time.perf_counter() - started, 1))
            with results_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            log(f"{key}: {record['steps']} steps, {record['tokens']:,} tokens, {record['params']:,} params → "
                f"val loss {record['val_loss']:.4f}, acc {record['val_acc']:.3f} ({record['seconds']} s)")
    return read_results(results_path)


def sweep_tokenizer(plan: SweepPlan, out: Path, log=print) -> Path:
    """out/tokenizer/tokenizer.json: a `plan.vocab_size` BPE of the train shards (trained once)."""
    from text.tokenizer import train_tokenizer

    path = out / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        log(f"training a {plan.vocab_size}-id tokenizer on {plan.shards}/train-*.tar")
        train_tokenizer([f"{plan.shards}/train-*.tar"], vocab_size=plan.vocab_size, out_dir=path.parent)
    return path


def train_one(plan: SweepPlan, record: dict, run_dir: Path) -> dict[str, float]:
    """One `text-pretrain` run through the shared loop; returns its final metrics."""
    from train.config import load_config
    from train.loop import train
    from train.stage_configs import PretrainConfig
    from train.stages import text_pretrain

    heads = max(1, record["dim"] // 16)
    overrides = [f"run.dir={run_dir}", f"run.seed={plan.seed}", "run.progress=false", "run.log_every=50",
                 f"model.dim={record['dim']}", f"model.n_layers={record['n_layers']}", f"model.n_heads={heads}",
                 f"model.n_kv_heads={max(1, heads // 2)}", f"data.shards={plan.shards}",
                 f"data.tokenizer={plan.tokenizer}", f"data.seq_len={plan.seq_len}",
                 f"data.batch_size={plan.batch_size}", f"optim.lr={plan.lr}", "optim.schedule=cosine",
                 "optim.min_lr_ratio=0.1", "optim.weight_decay=0.1",
                 f"optim.warmup_steps={max(1, round(plan.warmup_fraction * record['steps']))}",
                 f"train.steps={record['steps']}", f"train.eval_batches={plan.eval_batches}",
                 "checkpoint.every=0", "checkpoint.keep_last=1", *plan.extra]
    config = load_config(PretrainConfig, None, overrides)
    return train(config, lambda c, env: WithAccuracy(text_pretrain.build(c, env)), stage="text-pretrain")


class WithAccuracy:
    """A pretrain unit whose evaluation also reports next-token accuracy (`val_acc`), the
    "accuracy" of the two-step downstream predictor at our scale."""

    def __init__(self, unit):
        self.unit = unit
        self.model, self.train_loader, self.tokenizer_path = unit.model, unit.train_loader, unit.tokenizer_path

    def __getattr__(self, name: str):
        return getattr(self.unit, name)

    def evaluate(self, model, max_batches: int) -> dict[str, float]:
        from train.stages.text_common import IGNORE, cross_entropy
        from train.stages.text_pretrain import next_token_batch

        total = correct = count = 0.0
        device = next(self.model.parameters()).device
        for i, batch in enumerate(self.unit.make_val_loader()):
            if i >= max_batches:
                break
            inputs, doc_ids, targets = next_token_batch({k: v.to(device) for k, v in batch.items()})
            logits = model(inputs, doc_ids=doc_ids)
            keep = targets != IGNORE
            n = int(keep.sum())
            total += float(cross_entropy(logits, targets)) * n
            correct += float((logits.argmax(-1) == targets)[keep].sum())
            count += n
        return {"val_loss": total / count, "val_acc": correct / count}


__all__ = ["SweepPlan", "size_config", "plan_run", "run_sweep", "read_results", "sweep_tokenizer", "train_one",
           "WithAccuracy"]
