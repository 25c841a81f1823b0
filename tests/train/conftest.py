"""Fixtures for the training tests: a micro model (2 blocks of width 64) on synthetic batches,
so a step takes milliseconds and whole runs take about a second."""

from __future__ import annotations

from pathlib import Path

import pytest

@pytest.fixture(autouse=True)
def _one_thread():
    """Same thread count in-process as in the subprocesses: bitwise-comparable fp32 sums."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def chat_shards(tmp_path_factory) -> Path:
    """A small SFT + DPO shard folder built by data.build_chat's generators from synthetic docs."""
    from data.build_chat import make_dialogues, make_pairs
    from data.shards import write_manifest, write_shards
    from data.text_sources import Doc
    from train_helpers import sentences

    root = tmp_path_factory.mktemp("chat")
    lines = sentences(400, seed=3)
    docs = [Doc(f"n{i}", "austen", "novel", " ".join(lines[i * 5:(i + 1) * 5]), f"g{i}") for i in range(60)]
    docs += [Doc(f"h{i}", "harvard", "list", "\n".join(lines[300 + i * 10:310 + i * 10]), f"h{i}")
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
