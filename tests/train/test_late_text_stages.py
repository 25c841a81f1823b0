"""The late text recipe on micro models and tiny real-format shards: long-context extension
phases and their finish criterion, annealing (linear LR to zero, an up-sampled source, the Polyak
average), and one SFT → rejection sampling → SFT round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from herd.cli import main as herd
from train_helpers import MICRO, sentences

MICRO_REAL = [a for a in MICRO if not a.startswith("--model.vocab_size")]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sourced_shards(tmp_path_factory) -> Path:
    """Text shards with json metadata: short "fortunes" documents and long "austen" chapters that
    all contain the word zebra."""
    from data.shards import write_manifest, write_shards

    root = tmp_path_factory.mktemp("sourced")
    lines = sentences(900, seed=2)
    short = [{"txt": " ".join(lines[i:i + 3]), "json": {"source": "fortunes"}} for i in range(0, 450, 3)]
    long = [{"txt": "The zebra. " + " ".join(lines[i:i + 45]), "json": {"source": "austen"}}
            for i in range(450, 900, 45)]
    splits = {"train": write_shards(short[:120] + long[:8], root, "train"),
              "validation": write_shards(short[120:] + long[8:], root, "validation")}
    write_manifest(root, kind="text", splits=splits, sources=[])
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory, sourced_shards, tiny_tokenizer_dir) -> Path:
    run = tmp_path_factory.mktemp("base")
    assert herd(["train", "text-pretrain", *MICRO_REAL, f"--data.shards={sourced_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
                 "--train.steps=6", "--optim.lr=3e-3", f"--run.dir={run}"]) == 0
    return run


def _longctx(tmp_path, base, shards, tolerance: float) -> tuple[Path, dict]:
    run = tmp_path / f"longctx_{tolerance}"
    args = ["train", "text-longctx", *MICRO_REAL, f"--model.init={base}", f"--data.shards={shards}",
            "--data.batch_size=4", "--longctx.lengths=[64, 128]", "--longctx.min_steps=2", "--longctx.max_steps=3",
            "--longctx.tokens_per_step=256", "--longctx.min_doc_chars=200", "--longctx.rope_factor=4",
            f"--longctx.recover_tolerance={tolerance}", "--train.eval_every=1", "--train.eval_batches=2",
            "--train.steps=30", f"--run.dir={run}"]
    assert herd(args) == 0
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return run, json.loads((latest / "meta.json").read_text())


def test_longctx_phases_end_on_recovery_or_give_up(tmp_path, base, sourced_shards):
    # Tolerance 100 = always recovered: each phase ends at min_steps, and the stage ends early.
    _, meta = _longctx(tmp_path, base, sourced_shards, 100.0)
    phases = meta["longctx"]["phases"]
    assert [p["length"] for p in phases] == [64, 128] and all(p["recovered"] for p in phases)
    assert [p["steps"] for p in phases] == [2, 2] and meta["longctx"]["done"]
    assert meta["step"] < 30
    config = meta["model"]["config"]
    assert config["max_seq_len"] >= 128 and config["rope_scaling"]["original_max_seq_len"] == 32
    # Tolerance −1 = never recovered: phases run max_steps and say they did not recover.
    run, meta = _longctx(tmp_path, base, sourced_shards, -1.0)
    phases = meta["longctx"]["phases"]
    assert [p["steps"] for p in phases] == [3, 3] and not any(p["recovered"] for p in phases)
    rows = [r for r in _rows(run) if "short_ppl_ratio" in r]
    assert {r["seq_len"] for r in rows} == {64.0, 128.0}


def test_phased_loader_resumes_in_its_phase(sourced_shards, tiny_tokenizer):
    from data.shards import split_shards
    from train.stages.text_longctx import PhasedLoader
    from train.stages.text_mix import at_least_chars, filtered_loader

    def make(length):
        return filtered_loader(split_shards(sourced_shards, "train"), tiny_tokenizer, keep=at_least_chars(200),
                               seq_len=length, batch_size=2)

    loader = PhasedLoader([64, 128], make)
    it = iter(loader)
    next(it)
    loader.advance()
    assert next(it)["tokens"].shape == (2, 129)
    state = loader.state_dict()
    expected = next(it)["tokens"]
    again = PhasedLoader([64, 128], make)
    again.load_state_dict(state)
    assert torch.equal(next(iter(again))["tokens"], expected)


def test_anneal_decays_to_zero_upsamples_and_averages(tmp_path, base, sourced_shards, tiny_tokenizer):
    run = tmp_path / "anneal"
    # 4 rows × 32 tokens per step: 768 tokens → 6 steps; 2 of every 4 rows from "austen"
    assert herd(["train", "text-anneal", *MICRO_REAL, f"--model.init={base}", f"--data.shards={sourced_shards}",
                 "--data.batch_size=4", "--anneal.tokens=768", "--anneal.upsample_source=austen",
                 "--anneal.upsample_weight=0.5", "--anneal.average_every=2", "--optim.schedule=linear",
                 "--optim.warmup_steps=0", "--optim.lr=1e-3", "--checkpoint.every=2", "--checkpoint.keep_last=5",
                 f"--run.dir={run}"]) == 0
    lrs = [r["lr"] for r in _rows(run) if "lr" in r]
    assert len(lrs) == 6 and lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(1e-3 / 6)
    from train.checkpoint import load_tensors

    polyak = json.loads((run / "polyak" / "meta.json").read_text())
    assert polyak["polyak"] == {"count": 3, "steps": [2, 4, 6]} and polyak["finished"]
    average = load_tensors(run / "polyak")
    snapshots = [load_tensors(run / "checkpoints" / f"step_{s:08d}") for s in (2, 4, 6)]
    for name, value in average.items():
        torch.testing.assert_close(value, sum(s[name] for s in snapshots) / 3, rtol=1e-5, atol=1e-6)
    assert not torch.equal(average["output.weight"], snapshots[-1]["output.weight"])
    # the up-sampled rows really come from the chosen source
    from data.shards import split_shards
    from train.stages.text_mix import filtered_loader, source_is

    batch = next(iter(filtered_loader(split_shards(sourced_shards, "train"), tiny_tokenizer,
                                      keep=source_is("austen"), seq_len=32, batch_size=6)))
    text = tiny_tokenizer.decode(batch["tokens"].flatten().tolist())
    assert text.count("zebra") >= 1 and "Fortunes" not in text


def test_rule_scorer_prefers_the_reference_and_punishes_repetition():
    from train.rs import RuleScorer

    s = RuleScorer()
    ref = "The river ran past a quiet garden."
    assert s.score([], ref, ref, "repeat") > s.score([], "The river ran past.", ref, "repeat")
    assert s.score([], "a b c a b c a b c a b c", None, None) < s.score([], "a b c d e f", None, None)
    assert s.score([], ref, ref, "repeat", finished=False) < s.score([], ref, ref, "repeat")


def test_sft_rejection_sampling_sft_round(tmp_path, base, chat_shards, tiny_tokenizer):
    sft = tmp_path / "sft1"
    common = [*MICRO_REAL, "--data.batch_size=4", "--data.seq_len=96", "--train.steps=4", "--optim.lr=1e-3"]
    assert herd(["train", "text-sft", *common, f"--model.init={base}", f"--data.shards={chat_shards}",
                 f"--run.dir={sft}"]) == 0
    out = tmp_path / "rs"
    assert herd(["rs", "--checkpoint", str(sft), "--shards", str(chat_shards), "--out", str(out), "--k", "3",
                 "--prompts", "6", "--max-new-tokens", "8"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    summary = manifest["rejection_sampling"]
    assert manifest["kind"] == "chat" and summary["prompts"] == 6 and summary["kept"] >= 1
    assert summary["mean_score_best"] >= summary["mean_score_all"]
    assert manifest["splits"]["validation"]["count"] > 0
    records = [json.loads(line) for line in (out / "rs.jsonl").read_text().splitlines()]
    assert all(len(r["scores"]) == 3 for r in records)

    from data.shards import split_shards
    from train.stages.chat_data import DialogueBatcher

    batch = next(iter(DialogueBatcher(split_shards(out, "train"), tiny_tokenizer, seq_len=96, batch_size=1)))
    assert (batch["targets"] != -100).any()
    sft2 = tmp_path / "sft2"
    assert herd(["train", "text-sft", *common, f"--model.init={sft}", f"--data.shards={out}",
                 f"--run.dir={sft2}"]) == 0
    assert any("val_loss" in r for r in _rows(sft2))


def test_scaling_sweep_trains_its_tokenizer_resumes_and_fits(sourced_shards, tmp_path, capsys):
    """A 3-budget × 3-size IsoFLOP sweep through the CLI: its own small BPE, one record per run,
    a rerun trains nothing, and `fit --held-out` predicts the largest budget from the others."""
    out = tmp_path / "sweep"
    args = ["scaling", "sweep", "--budgets", "1e8,3e8,1e9", "--sizes", "8x1,12x1,16x1", "--shards", str(sourced_shards),
            "--vocab-size", "600", "--seq-len", "32", "--batch-size", "2", "--out", str(out)]
    assert herd(args) == 0
    from text.tokenizer import load_tokenizer

    assert load_tokenizer(out / "tokenizer" / "tokenizer.json").vocab_size == 600
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 9 and all(r["steps"] >= 1 and r["val_loss"] > 0 for r in records)
    assert {r["size"] for r in records if r["budget"] == 1e9} == {"8x1", "12x1", "16x1"}
    capsys.readouterr()
    assert herd(args) == 0
    assert capsys.readouterr().out.count("done already") == 9
    assert herd(["scaling", "fit", str(out / "results.jsonl"), "--held-out", "1e9", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert [b["flops"] for b in fit["budgets"]] == [1e8, 3e8]
    (held,) = fit["held_out"]
    assert held["flops"] == 1e9 and held["tokens_predicted"] > 0 and held["tokens_measured"] > 0
