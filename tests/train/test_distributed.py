"""Two CPU processes on gloo under torchrun: the loss curve matches one process with the same
global batch (within 1e-4), and a 2-process checkpoint resumes in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import ROOT, SYNTHETIC, run_cli

ARGS = ["text-pretrain", *[a for a in SYNTHETIC if not a.startswith("--data.batch_size")],
        "--train.steps=6", "--checkpoint.every=3", "--train.eval_every=3", "--train.eval_batches=2"]


def _curve(run: Path) -> list[tuple[int, str, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], k, r[k]) for r in rows for k in ("loss", "val_loss") if k in r]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("single")
    result = run_cli(*ARGS, "--data.batch_size=4", f"--run.dir={run}")
    assert result.returncode == 0, result.stderr
    return run


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, single, strategy):
    run = tmp_path / strategy
    result = _torchrun(*ARGS, "--data.batch_size=2", f"--dist.strategy={strategy}", f"--run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = _curve(single), _curve(run)
    assert [(s, k) for s, k, _ in one] == [(s, k) for s, k, _ in two]
    for (step, key, a), (_, _, b) in zip(one, two):
        assert abs(a - b) < 1e-4, (step, key, a, b)

    # The 2-process checkpoint of step 3 resumes in one process and lands on the 1-process weights.
    resumed = tmp_path / f"{strategy}_resumed"
    result = run_cli(*ARGS, "--data.batch_size=4", f"--run.dir={resumed}",
                     "--resume", str(run / "checkpoints" / "step_00000003"))
    assert result.returncode == 0, result.stderr
    expected = load_file(single / "checkpoints/step_00000006/model.safetensors")
    for path in (resumed, run):
        got = load_file(path / "checkpoints/step_00000006/model.safetensors")
        assert got.keys() == expected.keys()
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-5)
