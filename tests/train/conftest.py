"""Fixtures for the training tests: a micro model (2 blocks of width 64) on synthetic batches,
so a step takes milliseconds and whole runs take about a second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
def _one_thread():
    """Same thread count in-process as in the subprocesses: bitwise-comparable fp32 sums."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def chat_shards(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A small SFT + DPO shard folder built by data.build_chat's generators from synthetic docs."""
    from data.build_chat import make_dialogues, make_pairs
    from data.shards import write_manifest, write_shards
    from data.text_sources import Doc
    from tests.conftest import tiny_corpus

    root = tmp_path_factory.mktemp("chat")
    text = tiny_corpus(40_000, seed=3)
    docs = [Doc(f"n{i}", "austen", "novel", chunk, f"g{i}") for i, chunk in enumerate(text.split("\n\n")[:60])]
    docs += [Doc(f"h{i}", "harvard", "list", "\n".join(text.split(". ")[i * 10:(i + 1) * 10]), f"h{i}")
             for i in range(10)]
    docs += [Doc("w0", "wordnet", "wn", "\n".join(f"{w}, thing: a kind of {w} in the world" for w in
                                                   ("river", "garden", "window", "letter", "music", "mountain")), "w0")]
    sizes = {"define": 12, "fortune": 0, "continue": 30, "repeat": 40}
    dialogues = make_dialogues({"train": docs, "validation": docs[:20]}, 0, sizes)
    pairs = make_pairs(dialogues, 0, 1.0)
    splits = {}
    for split in ("train", "validation"):
        splits[split] = write_shards(({"json": {"messages": d["messages"], "task": d["task"]}}
                                      for d in dialogues[split]), root, split)
        splits[f"dpo_{split}"] = write_shards(({"json": p} for p in pairs[split]), root, f"dpo_{split}")
    write_manifest(root, kind="chat", splits=splits, sources=[])
    return root
