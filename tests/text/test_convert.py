"""Hugging Face interop against the real `transformers` client: an exported random tiny model
gives the same fp32 logits and the same greedy tokens in both, and imports back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from herd.cli import main
from text.config import RopeScaling, create_config
from text.convert import export_hf, from_meta_interleaved, import_hf
from text.generate import generate
from text.model import Transformer
from text.rope import rope_frequencies
from text.tokenizer import load_tokenizer
from train.checkpoint import load_text_model, save_checkpoint, text_model_meta

transformers = pytest.importorskip("transformers")

VOCAB = 1024  # the session tokenizer's size (tests/conftest.py)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("init") / "ckpt"
    assert main(["init", "--preset", "tiny", "--out", str(out), "--vocab-size", str(VOCAB),
                 "--tokenizer", str(tiny_tokenizer_dir / "tokenizer.json")]) == 0
    return out


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory) -> Path:
    return export_hf(checkpoint, tmp_path_factory.mktemp("hf") / "out")


def _variant_checkpoint(tmp_path: Path, tokenizer_dir: Path, **overrides) -> Path:
    torch.manual_seed(1)
    model = Transformer(create_config("tiny", vocab_size=VOCAB, **overrides))
    return save_checkpoint(tmp_path / "ckpt", model.state_dict(),
                           {"stage": "test", "step": 0, "model": text_model_meta(model)},
                           tokenizer=tokenizer_dir / "tokenizer.json")


def _hf_model(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_export_loads_as_llama_with_its_tokenizer(exported, checkpoint):
    model = _hf_model(exported)
    assert type(model).__name__ == "LlamaForCausalLM"
    config = json.loads((exported / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["rope_scaling"] is None
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    herd_tokenizer = load_tokenizer(checkpoint)
    text = "The river and the mountain."
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == herd_tokenizer.encode(text)
    assert tokenizer.bos_token_id == herd_tokenizer.bos_id == config["bos_token_id"]
    generation = json.loads((exported / "generation_config.json").read_text())
    assert sorted(generation["eos_token_id"]) == sorted(herd_tokenizer.stop_tokens)
    assert tokenizer.chat_template


def test_fp32_logits_match_transformers(exported, checkpoint):
    herd = load_text_model(checkpoint)
    hf = _hf_model(exported)
    tokens = torch.randint(0, VOCAB, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (hf(tokens).logits - herd(tokens)).abs().max().item()
    assert diff <= 1e-5


@pytest.mark.parametrize("variant", [dict(rope_scaling=RopeScaling(original_max_seq_len=256)),
                                     dict(tie_embeddings=True)], ids=["llama3-rope", "tied"])
def test_variants_match_transformers(tmp_path, tiny_tokenizer_dir, variant):
    ckpt = _variant_checkpoint(tmp_path, tiny_tokenizer_dir, **variant)
    out = export_hf(ckpt, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    hf = _hf_model(out)
    if "rope_scaling" in variant:
        assert config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
        head_dim = create_config("tiny").head_dim
        ours = rope_frequencies(head_dim, 500_000.0, variant["rope_scaling"])
        torch.testing.assert_close(hf.model.rotary_emb.inv_freq.float(), ours, rtol=1e-6, atol=0)
    else:
        assert config["tie_word_embeddings"] is True
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    herd = load_text_model(ckpt)
    tokens = torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (hf(tokens).logits - herd(tokens)).abs().max().item() <= 1e-5
    imported = import_hf(out)
    assert imported.config == herd.config


def test_greedy_generation_is_token_identical(exported, checkpoint):
    herd, hf = load_text_model(checkpoint), _hf_model(exported)
    prompt = [VOCAB - 256, 17, 300, 42, 9, 512]
    ours = generate(herd, [prompt], max_new_tokens=32)[0]
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False,
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    theirs = theirs[0, len(prompt):].tolist()
    assert len(ours) == 32 and ours == theirs


def test_import_round_trips_the_weights(exported, checkpoint):
    original = load_text_model(checkpoint)
    imported = import_hf(exported)
    assert imported.config == original.config
    a, b = original.state_dict(), imported.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_meta_interleaved_layout_is_permuted_to_half_split():
    """q rotated Meta's way (adjacent pairs as complex numbers) equals herd's half-split rotation
    of the permuted weight, up to the same fixed reordering of head dims."""
    torch.manual_seed(2)
    config = create_config("tiny", dim=64, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=512)
    hd, T = config.head_dim, 10
    w_meta = torch.randn(config.n_heads * hd, config.dim)
    x = torch.randn(T, config.dim)
    freqs = rope_frequencies(hd, config.rope_theta, None)
    angles = torch.outer(torch.arange(T, dtype=torch.float32), freqs)
    q = (x @ w_meta.T).view(T, config.n_heads, hd // 2, 2)
    meta = torch.view_as_real(torch.view_as_complex(q) * torch.polar(torch.ones_like(angles), angles)[:, None])
    meta_as_halves = torch.cat([meta[..., 0], meta[..., 1]], dim=-1)  # (re…, im…) per head
    w_herd = from_meta_interleaved({"layers.0.attention.wq.weight": w_meta}, config)["layers.0.attention.wq.weight"]
    q_herd = (x @ w_herd.T).view(T, config.n_heads, hd)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    rotated = q_herd * cos[:, None] + torch.cat([-q_herd[..., hd // 2:], q_herd[..., : hd // 2]], -1) * sin[:, None]
    torch.testing.assert_close(rotated, meta_as_halves, atol=1e-5, rtol=1e-5)


def test_export_cli(checkpoint, tmp_path, capsys):
    assert main(["export", "hf", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "model.safetensors").is_file()
    assert main(["export", "hf", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "p")]) != 0
    assert "not a herd checkpoint" in capsys.readouterr().err
