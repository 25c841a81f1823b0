"""`herd eval needle`: trials hide the needle at the asked depth within the asked length, and the
command writes per-cell accuracies, per-trial lines and the heat map."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from eval.needle import make_trial
from herd.cli import main as herd


@pytest.fixture(scope="module")
def filler_shards(tmp_path_factory, tiny_corpus) -> Path:
    from data.shards import write_manifest, write_shards

    root = tmp_path_factory.mktemp("filler")
    text = tiny_corpus(40_000, seed=5)
    docs = [{"txt": text[i:i + 4000]} for i in range(0, len(text), 4000)]
    write_manifest(root, kind="text", splits={"validation": write_shards(docs, root, "validation")}, sources=[])
    return root


def test_trial_places_the_needle_at_its_depth(tiny_tokenizer):
    filler = tiny_tokenizer.encode("the river ran past a quiet garden " * 200)
    for depth in (0.0, 0.5, 1.0):
        t = make_trial(filler, tiny_tokenizer, 200, depth, random.Random(0))
        assert len(t["ids"]) <= 200
        text = tiny_tokenizer.decode(t["ids"][1:])
        where = text.index(f"is {t['answer']}.") / len(text)
        assert abs(where - depth) < 0.2
        assert text.rstrip().endswith(f"The secret number of {t['name']} is")


def test_needle_cli_writes_scores_and_heat_map(tmp_path, filler_shards, tiny_tokenizer_dir):
    from text.config import create_config
    from text.model import Transformer
    from train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = Transformer(create_config("tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=1024,
                                      max_seq_len=512))
    ckpt = save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"stage": "test", "model": model.spec()},
                           tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    out = tmp_path / "needle"
    assert herd(["eval", "needle", "--checkpoint", str(ckpt), "--shards", str(filler_shards), "--out", str(out),
                 "--lengths", "64,256", "--depths", "0,1", "--trials", "2"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["accuracy"]) == {"64@0.0", "64@1.0", "256@0.0", "256@1.0"}
    assert all(0 <= v <= 1 for v in scores["accuracy"].values())
    assert len((out / "trials.jsonl").read_text().splitlines()) == 8
    assert (out / "needle.png").stat().st_size > 1000
    assert herd(["eval", "needle", "--checkpoint", str(ckpt), "--shards", str(filler_shards), "--out", str(out),
                 "--lengths", "1024"]) != 0  # beyond max_seq_len: one-line error


def test_a_model_that_retrieves_scores_one_and_one_that_does_not_zero(tmp_path, filler_shards, tiny_tokenizer_dir,
                                                                      tiny_tokenizer, monkeypatch):
    """The scoring path end to end: a stand-in "model" that reads the needle out of its prompt
    scores 1.0 in every cell; one that answers a wrong number scores 0."""
    import re

    import text.generate
    from text.config import create_config
    from text.model import Transformer
    from train.checkpoint import save_checkpoint

    model = Transformer(create_config("tiny", dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=1024,
                                      max_seq_len=512))
    ckpt = save_checkpoint(tmp_path / "ckpt", model.state_dict(), {"stage": "test", "model": model.spec()},
                           tokenizer=tiny_tokenizer_dir / "tokenizer.json")

    def retriever(offset):
        def generate(model, prompts, max_new_tokens, **kw):
            text = tiny_tokenizer.decode(prompts[0])
            name = re.findall(r"The secret number of (\w+) is$", text)[0]
            number = int(re.search(rf"secret number of {name} is (\d+)\.", text).group(1)) + offset
            return [tiny_tokenizer.encode(f" {number}.")]
        return generate

    for offset, expected in ((0, 1.0), (1, 0.0)):
        monkeypatch.setattr(text.generate, "generate", retriever(offset))
        out = tmp_path / f"needle{offset}"
        assert herd(["eval", "needle", "--checkpoint", str(ckpt), "--shards", str(filler_shards), "--out", str(out),
                     "--lengths", "128,256", "--depths", "0,0.5,1", "--trials", "2"]) == 0
        scores = json.loads((out / "scores.json").read_text())
        assert set(scores["accuracy"].values()) == {expected}
