"""`herd eval asr` and `herd transcribe` on micro speech shards with a small random speech model:
the outputs exist and agree with each other, long audio is chunked, bad audio is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from herd.cli import main as herd


@pytest.fixture(scope="module")
def speech_shards(tmp_path_factory) -> Path:
    from data.build_speech import build
    from data.debian import default_cache

    out = tmp_path_factory.mktemp("asr_speech")
    build(out, preset="micro", seed=0, cache=default_cache())
    return out


@pytest.fixture(scope="module")
def speech_ckpt(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random `llama3-speech` checkpoint (micro encoder, 2-layer LM) with its tokenizer."""
    from adapters.speech_fusion import build_speech_fusion
    from speech.config import create_config
    from text.config import create_config as text_config
    from text.model import Transformer
    from text.tokenizer import load_tokenizer
    from train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer_dir / "tokenizer.json")
    lm = Transformer(text_config("tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size,
                                 max_seq_len=512))
    fused = build_speech_fusion(lm, create_config("micro"))
    path = tmp_path_factory.mktemp("asr_ckpt") / "ckpt"
    save_checkpoint(path, fused.state_dict(), {"model": fused.spec(), "speech_prompt": "Repeat after me in English:"},
                    tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    return path


def test_eval_asr_writes_scores_utterances_and_plot(tmp_path, speech_ckpt, speech_shards):
    out = tmp_path / "asr"
    assert herd(["eval", "asr", "--checkpoint", str(speech_ckpt), "--shards", str(speech_shards), "--split", "test",
                 "--out", str(out), "--max-new-tokens", "6"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert scores["n"] == len(rows) == 8 and scores["overall"]["wer"] >= 0
    assert set(scores["groups"]) >= {"engine", "accent", "accent_seen", "voice"}
    assert "unseen" in scores["groups"]["accent_seen"]  # test-only accents are reported on their own
    words = sum(v["words"] for v in scores["groups"]["engine"].values())
    assert words == scores["overall"]["words"]
    assert {"id", "text", "hypothesis", "wer", "cer", "voice", "accent", "engine"} <= set(rows[0])
    assert (out / "wer_by_group.png").stat().st_size > 1000


def test_manifest_transcribe_and_chunking_agree(tmp_path, speech_ckpt, capsys):
    import soundfile as sf

    from eval.asr import Transcriber

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "a.wav", rng.normal(0, 0.1, 22_050 * 2).astype(np.float32), 22_050)  # any rate
    sf.write(tmp_path / "b.flac", rng.normal(0, 0.1, (16_000, 2)).astype(np.float32), 16_000)  # stereo
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav", "text": "hello world"}\n'
                                      '{"audio": "b.flac", "text": "good day"}\n')
    out = tmp_path / "asr"
    assert herd(["eval", "asr", "--checkpoint", str(speech_ckpt), "--manifest", str(tmp_path / "m.jsonl"),
                 "--out", str(out), "--max-new-tokens", "5"]) == 0
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    capsys.readouterr()
    assert herd(["transcribe", "--checkpoint", str(speech_ckpt), "--max-new-tokens", "5",
                 str(tmp_path / "a.wav"), str(tmp_path / "b.flac")]) == 0
    printed = [line.split("\t", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert printed == [r["hypothesis"] for r in rows]

    transcriber = Transcriber(str(speech_ckpt), chunk_seconds=2.0, max_new_tokens=3)
    pieces = transcriber.chunks(torch.zeros(16_000 * 5 + 7))
    assert len(pieces) == 3 and sum(p.shape[0] for p in pieces) == 16_000 * 5 + 7
    assert all(p.shape[0] <= 32_000 for p in pieces)
    assert len(transcriber([torch.zeros(16_000 * 5), torch.zeros(8_000)])) == 2


def test_bad_audio_is_one_line_naming_the_file(tmp_path, speech_ckpt, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really audio")
    assert herd(["transcribe", "--checkpoint", str(speech_ckpt), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.wav" in err
    assert herd(["transcribe", "--checkpoint", str(speech_ckpt), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err
