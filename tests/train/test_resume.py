"""Exact resume: a real `python -m train` process killed with SIGKILL at an arbitrary step — or
halfway through writing a checkpoint — and resumed ends with bitwise-identical weights (CPU fp32)
and the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from train_helpers import ROOT, SYNTHETIC, run_cli

STEPS = 80
ARGS = ["text-pretrain", *SYNTHETIC, f"--train.steps={STEPS}", "--checkpoint.every=10", "--checkpoint.keep_last=2",
        "--train.eval_every=30", "--train.eval_batches=1"]


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _weights(run: Path) -> bytes:
    return (run / "checkpoints" / f"step_{STEPS:08d}" / "model.safetensors").read_bytes()


def _last_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_killed_runs_resume_exactly(tmp_path):
    """One run, three lives: killed by its fault hook halfway through writing checkpoint 20,
    resumed and killed again from outside (SIGKILL) at an arbitrary later step, resumed to the
    end. Its final weights equal an uninterrupted run's byte for byte."""
    reference = tmp_path / "reference"
    assert run_cli(*ARGS, f"--run.dir={reference}").returncode == 0, "reference run failed"

    # Life 1: dies inside the checkpoint write at step 20; checkpoint 10 survives and loads.
    run = tmp_path / "run"
    crashed = run_cli(*ARGS, f"--run.dir={run}", env={"HERD_FAULT_KILL_IN_CHECKPOINT": "20"})
    assert crashed.returncode == -signal.SIGKILL
    ckpts = run / "checkpoints"
    assert (ckpts / ".step_00000020.tmp" / "model.safetensors").is_file()  # the half-written one
    assert not (ckpts / "step_00000020").exists()
    assert (ckpts / "latest").read_text() == "step_00000010"
    from train.checkpoint import load_text_model

    load_text_model(ckpts / "step_00000010")

    # Life 2: resumes from step 10, is SIGKILLed from outside once it has logged step >= 45.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "train", *ARGS, f"--run.dir={run}", "--resume", "auto"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _last_step(run) < 45 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert 45 <= _last_step(run) < STEPS
    assert not (ckpts / ".step_00000020.tmp").exists()

    # Life 3: resumes from the latest complete checkpoint and finishes.
    resumed = run_cli(*ARGS, f"--run.dir={run}", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert _weights(run) == _weights(reference)
    assert _losses(run) == _losses(reference)
