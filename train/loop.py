"""The one training loop every stage runs (STYLE.md point 9).

A stage contributes a `TrainUnit` (model with its trainable set, batches, loss, evaluation); this
loop does the rest: seeds, activation checkpointing / compile, DDP or FSDP2 wrapping, AdamW with
warm-up + cosine/linear schedule, gradient accumulation, clipping, bf16 autocast over fp32 master
weights, NaN/inf step skipping, OOM reports, periodic validation, metrics (jsonl, TensorBoard,
PNG), atomic checkpoints with exact resume, and frozen-tensor verification.

    final_metrics = train(config, build_unit)     # build_unit(config, env) -> TrainUnit
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from train import distributed as D
from train.config import RunConfig
from train.metrics import MetricsLogger
from train.optim import build_optimizer, lr_at
from train.state import (find_latest, frozen_tensors, resolve_resume, save_training_checkpoint,
                         tensor_checksums, verify_frozen, load_training_checkpoint)
from train.unit import TrainUnit

UnitBuilder = Callable[[RunConfig, D.DistEnv], TrainUnit]


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient."""


def train(config: RunConfig, build_unit: UnitBuilder, *, stage: str = "train") -> dict[str, float]:
    """Run (or resume) a stage to `config.train.steps`; return the last logged metrics."""
    env = D.init_distributed(config.run.device, config.dist.backend)
    try:
        return _run(config, build_unit, stage, env)
    finally:
        D.shutdown_distributed()


def _run(config: RunConfig, build_unit: UnitBuilder, stage: str, env: D.DistEnv) -> dict[str, float]:
    tc, rc, run = config.train, config.run, Path(config.run.dir)
    _seed_everything(rc.seed)  # same on every rank: identical initial weights
    unit = build_unit(config, env)
    model = unit.model
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{stage}: the trainable set is empty; nothing would train")
    _apply_block_options(unit.blocks(), config)
    wrapped = D.wrap_model(model, unit.blocks(), config.dist.strategy, env)
    trainable = [p for p in model.parameters() if p.requires_grad]  # FSDP2 swapped in DTensors
    optimizer = build_optimizer(model, config.optim, getattr(unit, "lr_scales", dict)())
    frozen = tensor_checksums(frozen_tensors(model, unit.frozen_modules()))

    step, loop_state = 0, {"bad_in_a_row": 0, "skipped": 0, "tokens": 0, "seconds": 0.0}
    resume_from = resolve_resume(config.checkpoint.resume, run)
    if resume_from is None and find_latest(run) is not None:
        raise ValueError(f"{run} already holds checkpoints; resume it (--resume auto) or choose a new run.dir")
    if resume_from is not None:
        meta = load_training_checkpoint(resume_from, model=model, optimizer=optimizer,
                                        loader=unit.train_loader, env=env)
        step, loop_state = int(meta["step"]), dict(meta["loop"])
        _info(env, f"resumed from {resume_from} at step {step}")
    _seed_everything(rc.seed + env.rank * 1009 + step, keep_if_resumed=resume_from is not None)

    logger = MetricsLogger(run, enabled=env.is_main, resume_step=step)
    if env.is_main:
        (run / "config.toml").write_text(_config_text(config))
    bar = _progress(env, rc, tc.steps, step)
    batches = iter(unit.train_loader)
    autocast = _autocast(env.device, tc.dtype)
    window = {"loss": 0.0, "steps": 0, "tokens": 0, "time": 0.0, "extra": {}}
    last: dict[str, float] = {}
    budget, by_time = rc.max_minutes * 60, _time_horizon(config)
    # loop_state "seconds" is the loop's wall time over every (re)start. A time horizon spends
    # run.max_minutes once in all; otherwise each (re)start may run that long.
    seconds_before, loop_start = loop_state.get("seconds", 0.0), time.monotonic()
    wrapped.train()
    final = step >= tc.steps
    while not final:
        started = time.perf_counter()
        seconds = seconds_before + time.monotonic() - loop_start
        lr = lr_at(step, tc.steps, config.optim, seconds / budget if by_time else None)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss_sum, tokens, extra = torch.zeros((), device=env.device), 0, {}
        for micro in range(tc.grad_accum):
            batch, batches = _next_batch(batches, unit.train_loader, env.device)
            sync = micro == tc.grad_accum - 1 or not hasattr(wrapped, "no_sync")
            with (contextlib.nullcontext() if sync else wrapped.no_sync()):
                try:
                    with autocast:
                        out = unit.loss(wrapped, batch)
                    (out.loss / tc.grad_accum).backward()
                except torch.OutOfMemoryError:
                    shapes = {k: tuple(v.shape) for k, v in batch.items() if torch.is_tensor(v)}
                    raise RuntimeError(f"out of memory at step {step + 1} on a batch of shape {shapes}; "
                                       "lower data.batch_size or data.seq_len, or enable "
                                       "model.activation_checkpointing") from None
            loss_sum += out.loss.detach().float()
            tokens += out.tokens
            for k, v in out.metrics.items():
                extra[k] = extra.get(k, 0.0) + float(v) / tc.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, tc_clip(config))
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        loss = loss_sum / tc.grad_accum
        bad = D.any_rank(not (torch.isfinite(loss) and torch.isfinite(grad_norm)), env.device)
        if bad:
            loop_state["bad_in_a_row"] += 1
            loop_state["skipped"] += 1
            _info(env, f"step {step + 1}: non-finite loss/gradient, step skipped "
                       f"({loop_state['bad_in_a_row']} in a row)")
            if loop_state["bad_in_a_row"] >= tc.max_bad_steps:
                raise NonFiniteLossError(
                    f"aborting at step {step + 1}: {loop_state['bad_in_a_row']} consecutive steps had a "
                    f"NaN/inf loss or gradient (train.max_bad_steps={tc.max_bad_steps}); "
                    "lower optim.lr or check the data")
        else:
            optimizer.step()
            loop_state["bad_in_a_row"] = 0
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if hasattr(unit, "after_step"):  # optional hook, e.g. Polyak averaging while annealing
            unit.after_step(step)
        tokens = int(D.all_reduce_sum(tokens, env.device))
        loop_state["tokens"] += tokens
        elapsed = time.perf_counter() - started
        if not bad:
            window["loss"] += float(loss)
            window["steps"] += 1
            for k, v in extra.items():
                window["extra"][k] = window["extra"].get(k, 0.0) + v
        window["tokens"] += tokens
        window["time"] += elapsed
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}", tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}")

        loop_state["seconds"] = seconds_before + time.monotonic() - loop_start
        ran = loop_state["seconds"] - (0.0 if by_time else seconds_before)
        out_of_time = budget > 0 and D.any_rank(ran > budget, env.device)
        final = step >= tc.steps or out_of_time or _unit_finished(unit, env)
        if step % rc.log_every == 0 or final:
            last = _flush_window(window, env, lr=lr, grad_norm=float(grad_norm), loop_state=loop_state)
            logger.log(step, last)
        if (tc.eval_every and step % tc.eval_every == 0) or final:
            val = _evaluate(unit, wrapped, tc.eval_batches, autocast, env)
            if val:
                last.update(val)
                logger.log(step, val)
                _info(env, f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()), bar)
            final = final or _unit_finished(unit, env)  # a criterion this evaluation decided
        every = config.checkpoint.every
        if (every and step % every == 0) or final:
            verify_frozen(frozen, model, unit.frozen_modules(), f"by step {step}")
            if out_of_time:
                _info(env, f"run.max_minutes={rc.max_minutes} reached at step {step}; stopping", bar)
            meta = {"stage": stage, "step": step, "finished": final, "config": config.to_dict(),
                    "loop": loop_state,
                    "metrics": last, "frozen_checksums": frozen, **unit.checkpoint_meta()}
            save_training_checkpoint(run, step, model=model, optimizer=optimizer,
                                     loader=unit.train_loader, meta=meta, tokenizer=unit.tokenizer_path,
                                     keep_last=config.checkpoint.keep_last, env=env)
    verify_frozen(frozen, model, unit.frozen_modules(), "at the end of the run")
    if env.is_main and hasattr(unit, "write_samples") and not D.is_fsdp(model):
        try:
            unit.write_samples(run / "samples.txt")  # a few greedy generations beside the metrics
        except Exception as err:  # noqa: BLE001 - samples are a courtesy; the run itself succeeded
            _info(env, f"could not write samples.txt: {err}")
    if bar is not None:
        bar.close()
    logger.close()
    return last


def _unit_finished(unit: TrainUnit, env: D.DistEnv) -> bool:
    """A unit may end its stage early by a criterion of its own (`finished()`, e.g. long-context
    extension once short-context perplexity has recovered); units without one never do. Any rank
    finishing ends every rank, so no rank waits on a collective the others left."""
    return hasattr(unit, "finished") and D.any_rank(bool(unit.finished()), env.device)


def _time_horizon(config: RunConfig) -> bool:
    """Whether the LR decays over run.max_minutes (optim.horizon "minutes") rather than steps."""
    horizon = config.optim.horizon
    if horizon not in ("steps", "minutes"):
        raise ValueError(f'optim.horizon must be "steps" or "minutes", got {horizon!r}')
    if horizon == "minutes" and config.run.max_minutes <= 0:
        raise ValueError('optim.horizon = "minutes" needs run.max_minutes > 0')
    return horizon == "minutes"


def tc_clip(config: RunConfig) -> float:
    return config.optim.grad_clip if config.optim.grad_clip > 0 else math.inf


def _flush_window(window: dict, env: D.DistEnv, *, lr: float, grad_norm: float,
                  loop_state: dict) -> dict[str, float]:
    n = max(1, window["steps"])
    local = {"loss": window["loss"] / n, **{k: v / n for k, v in window["extra"].items()}}
    values = D.all_reduce_mean(local, env.device) if window["steps"] else {}
    values.update(lr=lr, grad_norm=grad_norm, tokens_per_s=window["tokens"] / max(window["time"], 1e-9),
                  tokens=loop_state["tokens"], skipped_steps=loop_state["skipped"])
    window.update(loss=0.0, steps=0, tokens=0, time=0.0, extra={})
    return values


@torch.no_grad()
def _evaluate(unit: TrainUnit, model: nn.Module, max_batches: int, autocast, env: D.DistEnv) -> dict[str, float]:
    model.eval()
    with autocast:
        values = unit.evaluate(model, max_batches)
    model.train()
    values = D.all_reduce_mean(values, env.device)
    if "val_loss" in values:
        values["val_ppl"] = math.exp(min(values["val_loss"], 50.0))
    return values


def _next_batch(batches, loader, device: torch.device):
    try:
        batch = next(batches)
    except StopIteration:  # a finite loader: start its next epoch
        batches = iter(loader)
        batch = next(batches)
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}, batches


def _apply_block_options(blocks: list[nn.Module], config: RunConfig) -> None:
    """Activation checkpointing and compile per block, in place: parameter names never change."""
    for block in blocks:
        if config.model.activation_checkpointing:
            block.forward = _checkpointed(block.forward)
        if config.model.compile:
            block.compile()


def _checkpointed(forward: Callable) -> Callable:
    from torch.utils.checkpoint import checkpoint

    def run(*args: Any, **kwargs: Any):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """train.dtype with "auto" resolved: bf16 where it is fast, fp32 where bf16 is emulated (an
    AVX2-only CPU runs bf16 matmuls ~50x slower than fp32)."""
    if dtype not in ("bf16", "fp32", "auto"):
        raise ValueError(f"train.dtype must be bf16, fp32 or auto, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if device.type == "cuda":
        return "bf16"
    capability = torch.backends.cpu.get_cpu_capability()
    return "bf16" if "AVX512" in capability or "AMX" in capability else "fp32"


def _autocast(device: torch.device, dtype: str):
    enabled = resolve_dtype(dtype, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _seed_everything(seed: int, keep_if_resumed: bool = False) -> None:
    if keep_if_resumed:
        return  # RNG states came from the checkpoint
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _progress(env: D.DistEnv, rc, total: int, step: int):
    if not (env.is_main and rc.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)


def _info(env: D.DistEnv, message: str, bar=None) -> None:
    if env.is_main:
        (bar.write if bar is not None else print)(f"herd train: {message}", file=sys.stderr)


def _config_text(config: RunConfig) -> str:
    from train.config import to_toml

    return to_toml(config)


__all__ = ["train", "NonFiniteLossError", "UnitBuilder", "resolve_dtype"]
