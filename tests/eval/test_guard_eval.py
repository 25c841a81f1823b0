"""`herd eval guard`: the scores are the textbook definitions (unsafe = positive), and the command
writes scores.json + samples.jsonl that agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eval.guard import score
from herd.cli import main


def _record(label: str, prediction: str, category: str | None = None, predicted: str | None = None,
            role: str = "user", kind: str = "harmful") -> dict:
    return {"label": label, "prediction": prediction, "category": category, "predicted_category": predicted,
            "role": role, "kind": kind}


def test_score_definitions() -> None:
    records = [
        _record("unsafe", "unsafe", "S1", "S1"),                     # TP, right category
        _record("unsafe", "unsafe", "S1", "S2"),                     # TP, wrong category
        _record("unsafe", "safe", "S9", role="agent", kind="compliance"),   # FN
        _record("safe", "unsafe", kind="lookalike", predicted="S1"),  # FP
        _record("safe", "safe", kind="lookalike"),                    # TN
        _record("safe", "safe", kind="real", role="agent"),           # TN
    ]
    s = score(records)
    assert s["precision"] == pytest.approx(2 / 3, abs=1e-4) and s["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["f1"] == pytest.approx(2 / 3, abs=1e-3) and s["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert s["false_positive_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["per_category_recall"] == {"S1": 1.0, "S9": 0.0}
    assert s["per_category_accuracy"] == {"S1": 0.5, "S9": 0.0}
    assert s["category_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["flagged_by_kind"] == {"compliance": 0.0, "harmful": 1.0, "lookalike": 0.5, "real": 0.0}
    assert s["by_role"]["agent"]["recall"] == 0.0 and s["by_role"]["user"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    with pytest.raises(ValueError, match="no examples"):
        score([])


def test_eval_guard_writes_consistent_outputs(tmp_path: Path, tiny_tokenizer, tiny_tokenizer_dir) -> None:
    from data.build_guard import make_examples
    from data.shards import write_manifest, write_shards
    from text.config import create_config
    from text.model import Transformer
    from train.checkpoint import save_checkpoint

    benign = {s: [(f"What does word{i} mean?", f"Word{i} means a thing.") for i in range(20)]
              for s in ("train", "validation", "test")}
    examples = make_examples(benign, seed=0)["test"][:24]
    shards = {"test": write_shards(({"__key__": f"g{i:03d}", "json": e} for i, e in enumerate(examples)),
                                   tmp_path / "shards", "test")}
    write_manifest(tmp_path / "shards", kind="guard", splits=shards, sources=[])
    torch.manual_seed(0)
    model = Transformer(create_config("tiny", vocab_size=tiny_tokenizer.vocab_size, dim=64, n_layers=2, n_heads=4,
                                      n_kv_heads=2, multiple_of=32, max_seq_len=512))
    save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"stage": "test", "step": 0, "model": model.spec()},
                    tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    out = tmp_path / "eval"
    assert main(["eval", "guard", "--checkpoint", str(tmp_path / "ckpt"), "--shards", str(tmp_path / "shards"),
                 "--out", str(out), "--batch-size", "8", "--limit", "20"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == scores["examples"] == 20
    assert {k: v for k, v in score(samples).items()} == {k: scores[k] for k in score(samples)}
    assert [s["key"] for s in samples] == [f"g{i:03d}" for i in range(20)]
    assert main(["eval", "guard", "--checkpoint", str(tmp_path / "ckpt"), "--shards", str(tmp_path),
                 "--out", str(out)]) == 2  # not a guard shard folder: one line, exit 2
