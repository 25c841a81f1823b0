"""Shared helpers of the training tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MICRO = ["--model.dim=64", "--model.n_layers=2", "--model.n_heads=4", "--model.n_kv_heads=2",
         "--model.vocab_size=256", "--data.seq_len=32", "--run.progress=false", "--train.dtype=fp32",
         "--optim.warmup_steps=2", "--run.log_every=1"]
"""Overrides that make any text stage tiny."""

SYNTHETIC = MICRO + ["--data.synthetic=true", "--data.batch_size=4"]


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m train ARGS` in a fresh process (one thread, deterministic)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def sentences(n: int, seed: int = 0) -> list[str]:
    """Deterministic English-like sentences."""
    import random

    words = ("the river ran past a quiet garden while an old man wrote a long letter by the window "
             "and music came from the mountain house in the evening light").split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))).capitalize() + "."
            for _ in range(n)]
