"""`herd eval text`: perplexity equals exp(mean NLL) computed directly with the model, over shards
and over a JSONL manifest, and bad manifests fail with one line naming the line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from eval.text import windows
from herd.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer_dir):
    out = tmp_path_factory.mktemp("lm") / "ckpt"
    assert main(["init", "--preset", "tiny", "--out", str(out), "--tokenizer",
                 str(tiny_tokenizer_dir / "tokenizer.json"), "--vocab-size", "1024"]) == 0
    return out


def test_windows_predict_each_token_once():
    ids = list(range(11))
    got = list(windows(ids, 4))
    assert [w[0] for w in got] == [0, 4, 8] and got[-1] == [8, 9, 10]
    assert sum(len(w) - 1 for w in got) == len(ids) - 1
    assert list(windows([5], 4)) == [[5]]


def test_manifest_perplexity_matches_direct_computation(tmp_path, checkpoint, tiny_tokenizer):
    from train.models import load_model

    texts = ["the river ran past the old garden.", "a small model learns quickly " * 30]
    manifest = tmp_path / "docs.jsonl"
    manifest.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert main(["eval", "text", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                 "--out", str(tmp_path / "out"), "--seq-len", "32", "--batch-size", "3"]) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())

    model, _ = load_model(checkpoint)
    nll, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tiny_tokenizer.encode(t, bos=True, eos=True)])
            logp = torch.log_softmax(model(ids[:, :-1]).float(), -1)  # whole document at once
            nll -= float(logp.gather(-1, ids[:, 1:, None]).sum())
            count += ids.shape[1] - 1
    assert scores["tokens"] == count and scores["documents"] == 2
    # windows of 32 tokens see less context than one pass: close, not equal, for a random model
    assert scores["nll"] == pytest.approx(nll / count, rel=0.05)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["nll"]))
    lines = (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_short_documents_are_exact(tmp_path, checkpoint, tiny_tokenizer):
    """Documents shorter than a window are scored exactly as a single forward pass."""
    from train.models import load_model

    manifest = tmp_path / "docs.jsonl"
    manifest.write_text(json.dumps({"text": "the old garden"}) + "\n")
    assert main(["eval", "text", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                 "--out", str(tmp_path / "out")]) == 0
    model, _ = load_model(checkpoint)
    ids = torch.tensor([tiny_tokenizer.encode("the old garden", bos=True, eos=True)])
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(ids[:, :-1])[0].float(), ids[0, 1:])
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["nll"] == pytest.approx(float(expected), rel=1e-5)


def test_bad_manifest_is_one_line(tmp_path, checkpoint, capsys):
    manifest = tmp_path / "docs.jsonl"
    manifest.write_text('{"text": "fine"}\n{"caption": "no text key"}\n')
    assert main(["eval", "text", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                 "--out", str(tmp_path / "out")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "docs.jsonl:2" in err[0] and "'text'" in err[0]
    assert not (tmp_path / "out" / "scores.json").exists()


class InductionStandIn(torch.nn.Module):
    """Predicts the token that followed the latest earlier occurrence of the current token (0 if none)."""

    def forward(self, x):
        B, T = x.shape
        logits = torch.zeros(B, T, 64)
        for b in range(B):
            for i in range(T):
                earlier = [j for j in range(i) if x[b, j] == x[b, i]]
                logits[b, i, int(x[b, earlier[-1] + 1]) if earlier else 0] = 1.0
        return logits


class FixedOffsetStandIn(torch.nn.Module):
    """Predicts the token that came `offset - 1` positions back: it "copies" only spans of `offset`."""

    def __init__(self, offset: int):
        super().__init__()
        self.offset = offset

    def forward(self, x):
        logits = torch.zeros(*x.shape, 64)
        back = x.roll(self.offset - 1, dims=1)
        logits.scatter_(-1, back[..., None], 1.0)
        return logits


def test_copy_accuracy_separates_a_copying_lm_from_one_that_cannot_copy():
    from eval.text import copy_accuracy, copy_rows

    spans = (6, 8)
    docs = [[1, *range(10 + k, 10 + k + 11)] for k in range(4)] + [[1, 5, 6]]  # the last is too short
    rows = copy_rows(docs, bos_id=1, spans=spans)
    assert [len(r) for r in rows] == [13, 17, 13, 17]
    assert rows[1][1:9] == rows[1][9:] == list(range(11, 19))
    copier = copy_accuracy(InductionStandIn(), rows)
    assert copier["copy_accuracy"] == 1.0 and copier["copy_accuracy_first_pass"] == 0.0
    unigram = copy_accuracy(lambda x: torch.zeros(*x.shape, 64).index_fill_(-1, torch.tensor([12]), 1.0), rows)
    assert unigram["copy_accuracy"] == unigram["copy_accuracy_first_pass"] < 0.2
    # a model that looks a fixed distance back copies the rows of that span only
    assert copy_accuracy(FixedOffsetStandIn(8), rows)["copy_accuracy"] == 14 / 24


def test_scores_report_copying(tmp_path, checkpoint):
    manifest = tmp_path / "docs.jsonl"
    manifest.write_text(json.dumps({"text": "the river ran past the old garden wall and on " * 8}) + "\n")
    assert main(["eval", "text", "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                 "--out", str(tmp_path / "out")]) == 0
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["copy_rows"] == 1 and 0.0 <= scores["copy_accuracy"] <= 1.0
