"""The two speech stages run a few steps in-process on `micro` speech shards: loss falls, the
frozen sets are exact and verified, checkpoints rebuild through `train.models.load_model`, and the
speech-adapter batches (prompt, span, transcript) give each utterance what it gets alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from herd.cli import main as herd

RUN = ["--run.progress=false", "--run.log_every=1", "--train.dtype=fp32", "--optim.warmup_steps=1",
       "--data.batch_size=4", "--train.eval_batches=1"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def speech_shards(tmp_path_factory) -> Path:
    from data.build_speech import build
    from data.debian import default_cache

    out = tmp_path_factory.mktemp("speech")
    build(out, preset="micro", seed=0, cache=default_cache())
    return out


@pytest.fixture(scope="module")
def bestrq_run(tmp_path_factory, speech_shards) -> Path:
    run = tmp_path_factory.mktemp("bestrq")
    assert herd(["train", "speech-bestrq", *RUN, f"--run.dir={run}", f"--data.shards={speech_shards}",
                 "--bestrq.preset=micro", "--train.steps=12", "--optim.lr=1e-2", "--bestrq.probe_steps=5",
                 "--bestrq.probe_utterances=4"]) == 0
    return run


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random micro LM checkpoint with the session tokenizer (the adapter stage's model.init)."""
    from text.config import create_config
    from text.model import Transformer
    from text.tokenizer import load_tokenizer
    from train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer_dir / "tokenizer.json")
    lm = Transformer(create_config("tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size,
                                   max_seq_len=512))
    path = tmp_path_factory.mktemp("lm") / "ckpt"
    save_checkpoint(path, lm.state_dict(), {"model": lm.spec()}, tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    return path


def test_bestrq_stage_learns_keeps_the_quantizer_and_reloads(bestrq_run):
    from speech.bestrq import BestRQ
    from train.models import load_model

    rows = [r for r in _rows(bestrq_run) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"]
    final = [r for r in _rows(bestrq_run) if "val_accuracy" in r][-1]
    assert 0.0 <= final["val_accuracy"] <= 1.0 and 0.0 <= final["probe_cer"] and 0.0 <= final["probe_cer_random"]
    model, meta = load_model(bestrq_run)
    assert isinstance(model, BestRQ) and meta["model"]["arch"] == "bestrq"
    assert model.quantizer.checksum() == meta["quantizer_sha256"]
    assert {k for k in meta["frozen_checksums"]} == {"quantizer.projection", "quantizer.codebooks"}


def test_speech_adapter_stage_trains_the_speech_path_only(tmp_path, bestrq_run, text_lm, speech_shards):
    from adapters.speech_fusion import SpeechFusion
    from train.models import load_model

    run = tmp_path / "adapter"
    assert herd(["train", "speech-adapter", *RUN, f"--run.dir={run}", f"--data.shards={speech_shards}",
                 f"--model.init={text_lm}", f"--speech.encoder_init={bestrq_run}", "--speech.preset=micro",
                 "--train.steps=10", "--optim.lr=3e-3", "--speech.ctc_weight=0.3",
                 "--speech.token_ctc_weight=0.3", "--speech.eval_wer_batches=1", "--speech.max_new_tokens=8"]) == 0
    rows = [r for r in _rows(run) if "ce" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["token_ctc"] < rows[0]["token_ctc"]
    model, meta = load_model(run)
    assert isinstance(model, SpeechFusion) and model.ctc_head is not None
    assert [p["path"] for p in meta["parents"]][1].startswith(str(bestrq_run))
    frozen = set(meta["frozen_checksums"])
    assert frozen == set(model.text_model.state_dict())  # exactly the LM; the speech path trained
    lm = load_model(text_lm)[0]
    for k, v in lm.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert "val_wer" in [r for r in _rows(run) if "val_loss" in r][-1]
    assert (run / "samples.txt").read_text().startswith("ref: ")


def test_padded_prompt_batch_equals_batch_size_one(text_lm):
    from adapters.speech_fusion import build_speech_fusion
    from speech.config import create_config
    from speech.transcribe import IGNORE, SpeechPrompt
    from text.tokenizer import load_tokenizer
    from train.models import load_model

    torch.manual_seed(0)
    fused = build_speech_fusion(load_model(text_lm)[0], create_config("micro")).eval()
    prompt = SpeechPrompt(load_tokenizer(text_lm), "Repeat after me in English:", vocab_size=fused.vocab_size)
    feats, lengths = torch.randn(3, 90, 80), torch.tensor([90, 41, 63])
    texts = ["the birch canoe", "a short one", "glue the sheet to the dark blue background"]
    rows = prompt.training_rows(fused.speech_lengths(lengths).tolist(), texts)
    assert prompt.tokenizer.decode(rows["targets"][2][rows["targets"][2] != IGNORE].tolist(),
                                   skip_special=True).strip() == texts[2]
    with torch.no_grad():
        batched = fused(rows["tokens"], feats, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = prompt.training_rows(fused.speech_lengths(lengths[i:i + 1]).tolist(), texts[i:i + 1])
            single = fused(alone["tokens"], feats[i:i + 1, :n], lengths[i:i + 1])
            width = alone["tokens"].shape[1]
            torch.testing.assert_close(batched[i, :width], single[0], atol=1e-5, rtol=1e-5)


def test_attached_speech_generation_matches_the_full_forward(text_lm):
    from adapters.speech_fusion import build_speech_fusion
    from speech.config import create_config
    from speech.transcribe import SpeechPrompt, transcribe
    from text.tokenizer import load_tokenizer
    from train.models import load_model

    torch.manual_seed(0)
    fused = build_speech_fusion(load_model(text_lm)[0], create_config("micro")).eval()
    prompt = SpeechPrompt(load_tokenizer(text_lm), "Repeat after me in English:", vocab_size=fused.vocab_size)
    feats, lengths = torch.randn(2, 70, 80), torch.tensor([70, 33])
    texts = transcribe(fused, prompt, feats, lengths, max_new_tokens=4)
    for i, n in enumerate(lengths.tolist()):
        ids = torch.tensor([prompt.prompt(int(fused.speech_lengths(lengths[i:i + 1])))])
        with torch.no_grad():
            for _ in range(4):  # greedy decoding by full forwards, no cache
                nxt = fused(ids, feats[i:i + 1, :n], lengths[i:i + 1])[0, -1].argmax()
                ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
                if int(nxt) in prompt.tokenizer.stop_tokens:
                    break
        new = [t for t in ids[0, len(prompt.prompt(int(fused.speech_lengths(lengths[i:i + 1])))):].tolist()
               if t not in prompt.tokenizer.stop_tokens]
        assert texts[i] == prompt.tokenizer.decode(new, skip_special=True).strip()
    with pytest.raises(ValueError, match="no audio"):
        fused(torch.tensor([prompt.prompt(3)]))
