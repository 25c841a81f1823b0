"""Each text stage's CLI runs a few steps in-process on tiny real-format data (tokenizer, text
shards through data.packing, chat shards from data.build_chat), chained pretrain → SFT → DPO;
DPO's loss and implicit reward margin move the right way."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from herd.cli import main as herd
from train_helpers import MICRO, sentences

MICRO_REAL = [a for a in MICRO if not a.startswith("--model.vocab_size")]  # vocab from the tokenizer


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def text_shards(tmp_path_factory) -> Path:
    from data.shards import write_manifest, write_shards

    root = tmp_path_factory.mktemp("text")
    lines = sentences(600, seed=1)
    docs = [" ".join(lines[i:i + 6]) for i in range(0, 600, 6)]
    splits = {"train": write_shards(({"txt": d} for d in docs[:90]), root, "train"),
              "validation": write_shards(({"txt": d} for d in docs[90:]), root, "validation")}
    write_manifest(root, kind="text", splits=splits, sources=[])
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, text_shards, tiny_tokenizer_dir) -> Path:
    run = tmp_path_factory.mktemp("pretrain")
    assert herd(["train", "text-pretrain", *MICRO_REAL, f"--data.shards={text_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
                 "--train.steps=8", "--optim.lr=3e-3", f"--run.dir={run}"]) == 0
    return run


def test_pretrain_on_packed_shards(pretrained, tiny_tokenizer):
    rows = _rows(pretrained)
    val = [r for r in rows if "val_ppl" in r]
    assert val and math.isfinite(val[-1]["val_ppl"]) and val[-1]["val_ppl"] < tiny_tokenizer.vocab_size
    ckpt = pretrained / "checkpoints" / "step_00000008"
    assert (ckpt / "tokenizer.json").is_file()
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["model"]["config"]["vocab_size"] == tiny_tokenizer.vocab_size
    assert (pretrained / "samples.txt").read_text().startswith("### It is a truth")


def test_pretrain_with_tied_embeddings_and_the_copy_curriculum(tmp_path, text_shards, tiny_tokenizer_dir):
    run = tmp_path / "copy"
    common = ["train", "text-pretrain", *MICRO_REAL, f"--data.shards={text_shards}",
              f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
              "--model.tie_embeddings=true", "--copy.warmup_steps=4", "--copy.subset_steps=2",
              "--copy.fraction=0.25", "--copy.span=8", "--checkpoint.every=3", f"--run.dir={run}"]
    assert herd([*common, "--train.steps=3"]) == 0
    assert herd([*common, "--train.steps=6", "--resume", "auto"]) == 0  # through the warm-up into prose
    rows = [r for r in _rows(run) if "loss" in r]
    assert [r["step"] for r in rows][-1] == 6 and all(math.isfinite(r["loss"]) for r in rows)
    meta = json.loads((run / "checkpoints" / "step_00000006" / "meta.json").read_text())
    assert meta["model"]["config"]["tie_embeddings"] is True


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, pretrained, chat_shards) -> Path:
    run = tmp_path_factory.mktemp("sft")
    assert herd(["train", "text-sft", *MICRO_REAL, f"--model.init={pretrained / 'checkpoints' / 'latest'}",
                 f"--data.shards={chat_shards}", "--data.batch_size=4", "--data.seq_len=96",
                 "--train.steps=6", "--optim.lr=2e-3", f"--run.dir={run}"]) == 0
    return run


def test_sft_trains_on_assistant_tokens_only(sft_run, pretrained, chat_shards, tiny_tokenizer):
    rows = _rows(sft_run)
    assert any("val_loss" in r for r in rows)
    assert "### Repeat after me:" in (sft_run / "samples.txt").read_text()
    meta = json.loads((sft_run / "checkpoints" / "step_00000006" / "meta.json").read_text())
    assert meta["parents"][0]["path"].endswith("step_00000008") and len(meta["parents"][0]["sha256"]) == 64

    from data.shards import split_shards
    from train.stages.chat_data import IGNORE, DialogueBatcher

    batch = next(iter(DialogueBatcher(split_shards(chat_shards, "train"), tiny_tokenizer, seq_len=96, batch_size=2)))
    tokens, targets = batch["tokens"], batch["targets"]
    header = {tiny_tokenizer.start_header_id, tiny_tokenizer.end_header_id, tiny_tokenizer.bos_id}
    supervised = targets[targets != IGNORE]
    assert supervised.numel() and not set(supervised.tolist()) & header
    assert tiny_tokenizer.eot_id in supervised.tolist()  # the model learns to stop
    # the user's words are never targets: every supervised position lies after the assistant header
    for row in range(2):
        ids = tokens[row].tolist()
        first = (targets[row] != IGNORE).nonzero()[0].item()
        assert ids[:first + 1].count(tiny_tokenizer.end_header_id) == 2


def test_dpo_loss_falls_and_reward_margin_grows(tmp_path, sft_run, chat_shards, tiny_tokenizer):
    run = tmp_path / "dpo"
    assert herd(["train", "text-dpo", *MICRO_REAL, f"--model.init={sft_run}", f"--data.shards={chat_shards}",
                 "--data.train_split=dpo_train", "--data.val_split=dpo_validation", "--data.batch_size=4",
                 "--data.seq_len=96", "--train.steps=20", "--optim.lr=1e-3", "--optim.warmup_steps=1",
                 "--optim.schedule=constant", f"--run.dir={run}"]) == 0
    first = next(r for r in _rows(run) if "dpo_loss" in r)
    assert abs(first["reward_margin"]) < 1e-4 and abs(first["dpo_loss"] - math.log(2)) < 1e-4  # policy = reference

    # On the whole (small) training set: before = reference (loss log 2, margin 0); after: better.
    from data.shards import split_shards
    from train.checkpoint import load_text_model
    from train.stages.chat_data import PreferenceBatcher
    from train.stages.text_dpo import dpo_loss, sequence_logprobs
    from train.state import find_latest

    batch = next(iter(PreferenceBatcher(split_shards(chat_shards, "dpo_train"), tiny_tokenizer, seq_len=96,
                                        batch_size=1000, epochs=1, shuffle=False)))
    policy, reference = load_text_model(find_latest(run)), load_text_model(find_latest(sft_run))
    with torch.no_grad():
        (p, counts), (r, _) = sequence_logprobs(policy, batch), sequence_logprobs(reference, batch)
        _, before = dpo_loss(r, r, counts, beta=0.1, nll_coef=0.2)
        _, after = dpo_loss(p, r, counts, beta=0.1, nll_coef=0.2)
    assert before["reward_margin"] == 0 and before["dpo_loss"] == pytest.approx(math.log(2))
    assert after["reward_margin"] > 0.05 and after["dpo_loss"] < math.log(2) - 0.02, after
    assert after["reward_accuracy"] > 0.7, after
    meta = json.loads((run / "checkpoints" / "step_00000020" / "meta.json").read_text())
    assert list(meta["frozen_checksums"])[0].startswith("reference.")  # the reference was verified frozen


def test_dpo_masks_special_tokens_and_weights_nll():
    from train.stages.text_dpo import dpo_loss

    policy = torch.tensor([-10.0, -12.0, -20.0, -15.0])  # chosen rows first
    reference = torch.tensor([-11.0, -12.0, -18.0, -15.0])
    counts = torch.tensor([5, 4, 5, 4])
    loss, m = dpo_loss(policy, reference, counts, beta=0.1, nll_coef=0.2)
    margins = torch.tensor([0.1 * (1 - (-2)), 0.0])
    expected = -torch.nn.functional.logsigmoid(margins).mean() + 0.2 * torch.tensor([10 / 5, 12 / 4]).mean()
    assert torch.allclose(loss, expected) and m["reward_margin"] == pytest.approx(0.15)


@pytest.mark.parametrize("seed", range(5))
def test_group_documents_packs_every_row_once_into_fewer_slots(seed):
    import random

    from train.stages.chat_data import group_documents

    rng = random.Random(seed)
    lengths = [rng.randint(20, 48) for _ in range(16)]
    groups = group_documents(lengths, max_docs=4)
    assert sorted(i for g in groups for i in g) == list(range(16))
    assert all(len(g) <= 4 for g in groups)
    slots = len(groups) * max(sum(lengths[i] for i in g) for g in groups)
    assert sum(lengths) <= slots < 16 * max(lengths)
    assert group_documents(lengths, max_docs=1) == [[i] for i in sorted(range(16), key=lambda i: -lengths[i])]


def test_pack_rows_restarts_documents_and_never_predicts_across_them():
    from train.stages.chat_data import IGNORE, pack_rows

    rows = [([1, 2, 3], [7, IGNORE]), ([4, 5], [8]), ([6, 9, 9, 9], [9, 9, 9])]
    batch = pack_rows(rows, [[2], [0, 1]], pad_id=0)
    assert batch["tokens"].tolist() == [[6, 9, 9, 9, 0], [1, 2, 3, 4, 5]]
    assert batch["targets"].tolist() == [[9, 9, 9, IGNORE], [7, IGNORE, IGNORE, 8]]
    assert batch["doc_ids"].tolist() == [[0, 0, 0, 0, -1], [0, 0, 0, 1, 1]]
