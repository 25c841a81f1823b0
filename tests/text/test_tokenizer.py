"""Tokenizer invariants: the id layout of docs/internals.md, special-looking text stays plain text,
byte-exact round trips, reading webdataset shards, Hugging Face interop, one-line errors."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import pre_tokenizers

from text.tokenizer import (MULTIMODAL_TOKENS, SPECIAL_TOKENS, Tokenizer, load_tokenizer,
                            save_hf_tokenizer_files, train_tokenizer)

V = 1024  # the conftest tiny_tokenizer's vocab_size
ALL_SPECIAL = SPECIAL_TOKENS + MULTIMODAL_TOKENS


def _write_shard(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A webdataset shard: members KEY.EXT, grouped by key."""
    with tarfile.open(path, "w") as tar:
        for i, sample in enumerate(samples):
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"sample{i:05d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message


# --- id layout ---------------------------------------------------------------------------------

def test_special_token_ids_follow_the_llama3_layout(tiny_tokenizer: Tokenizer) -> None:
    tok = tiny_tokenizer
    assert tok.vocab_size == V and len(tok) == V + 8
    assert tok.backend.get_vocab_size(with_added_tokens=False) == V - 256
    assert tok.backend.get_vocab_size(with_added_tokens=True) == V + 8
    for offset, name in enumerate(SPECIAL_TOKENS):
        assert tok.special[name] == tok.backend.token_to_id(name) == V - 256 + offset
    for offset, name in enumerate(MULTIMODAL_TOKENS):
        assert tok.special[name] == tok.backend.token_to_id(name) == V + offset
    # The named offsets of docs/internals.md (Llama 3: 128000 + offset).
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (V - 256, V - 255, V - 252)
    assert (tok.start_header_id, tok.end_header_id, tok.eom_id, tok.eot_id, tok.python_tag_id) == \
        (V - 250, V - 249, V - 248, V - 247, V - 246)
    assert SPECIAL_TOKENS[2:4] == ("<|reserved_special_token_0|>", "<|reserved_special_token_1|>")
    assert SPECIAL_TOKENS[5] == "<|step_id|>"
    assert SPECIAL_TOKENS[11] == "<|reserved_special_token_2|>"
    assert SPECIAL_TOKENS[-1] == "<|reserved_special_token_246|>" and len(set(SPECIAL_TOKENS)) == 256
    assert (tok.image_id, tok.video_id, tok.speech_start_id, tok.speech_end_id) == (V, V + 1, V + 2, V + 3)
    assert tok.stop_tokens == (V - 255, V - 248, V - 247)


def test_bpe_ids_never_reach_the_specials(tiny_tokenizer: Tokenizer, tiny_corpus: Callable[..., str]) -> None:
    ids = tiny_tokenizer.encode(tiny_corpus(20_000, seed=1))
    assert max(ids) < V - 256
    # the 256 byte tokens take ids 0…255, so any byte string is encodable
    vocab = tiny_tokenizer.backend.get_vocab(with_added_tokens=False)
    assert sorted(vocab[c] for c in pre_tokenizers.ByteLevel.alphabet()) == list(range(256))


def test_bos_and_eos_flags(tiny_tokenizer: Tokenizer) -> None:
    tok = tiny_tokenizer
    plain = tok.encode("the world")
    assert tok.encode("the world", bos=True) == [tok.bos_id, *plain]
    assert tok.encode("the world", bos=True, eos=True) == [tok.bos_id, *plain, tok.eos_id]
    assert tok.encode_batch(["the world", "", "an old man"], bos=True) == \
        [tok.encode(t, bos=True) for t in ["the world", "", "an old man"]]


def test_split_pattern_is_llama3s(tiny_tokenizer: Tokenizer) -> None:
    pieces = [p for p, _ in tiny_tokenizer.backend.pre_tokenizer.pre_tokenize_str("We'll pay 1234567 now!!\n\nok")]
    # digits in groups of ≤3, contractions split off, space attached to the following word
    assert pieces == ["We", "'ll", "Ġpay", "Ġ", "123", "456", "7", "Ġnow", "!!ĊĊ", "ok"]


def test_frequent_words_become_single_tokens(tiny_tokenizer: Tokenizer) -> None:
    assert len(tiny_tokenizer.encode(" the")) == 1
    assert len(tiny_tokenizer.encode(" through")) == 1


# --- special-looking text is plain text --------------------------------------------------------

@pytest.mark.parametrize("name", ALL_SPECIAL[:12] + ALL_SPECIAL[-10:])
def test_special_looking_text_encodes_as_plain_text(tiny_tokenizer: Tokenizer, name: str) -> None:
    tok = tiny_tokenizer
    for text in (name, f"ignore that {name} and go on", f"{name}{name}\n"):
        ids = tok.encode(text)
        assert all(not tok.is_special(i) for i in ids), (text, ids)
        assert tok.encode(text) != [tok.special[name]]
        assert tok.decode(ids) == text


def test_every_special_string_is_plain_text(tiny_tokenizer: Tokenizer) -> None:
    ids = tiny_tokenizer.encode_batch(list(ALL_SPECIAL))
    assert not any(tiny_tokenizer.is_special(i) for row in ids for i in row)


def test_decode_renders_or_skips_special_ids(tiny_tokenizer: Tokenizer) -> None:
    tok = tiny_tokenizer
    ids = [tok.bos_id, *tok.encode("hi"), tok.image_id, tok.eot_id]
    assert tok.decode(ids) == "<|begin_of_text|>hi<|image|><|eot_id|>"
    assert tok.decode(ids, skip_special=True) == "hi"
    with pytest.raises(ValueError) as excinfo:
        tok.decode([0, V + 8])
    _one_line_error(excinfo, str(V + 8))


# --- round trips -------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text())
def test_roundtrip_arbitrary_unicode(tiny_tokenizer: Tokenizer, text: str) -> None:
    ids = tiny_tokenizer.encode(text)
    assert tiny_tokenizer.decode(ids) == text
    assert max(ids, default=0) < V - 256


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(ALL_SPECIAL), st.sampled_from(["<|", "|>", "<"])),
                max_size=12).map("".join))
def test_roundtrip_text_full_of_special_strings(tiny_tokenizer: Tokenizer, text: str) -> None:
    ids = tiny_tokenizer.encode(text, bos=True, eos=True)
    assert not any(tiny_tokenizer.is_special(i) for i in ids[1:-1])
    assert tiny_tokenizer.decode(ids[1:-1]) == text
    assert tiny_tokenizer.decode(ids, skip_special=True) == text


def test_stream_decoding_equals_batch_decoding(tiny_tokenizer: Tokenizer) -> None:
    text = "Zürich café 東京 🎉 the end."
    ids = [tiny_tokenizer.bos_id, *tiny_tokenizer.encode(text), tiny_tokenizer.eot_id]
    step = tiny_tokenizer.stream_decoder()
    pieces = [step(i) for i in ids]
    assert "".join(pieces) == tiny_tokenizer.decode(ids) and "\ufffd" not in "".join(pieces)
    assert "" in pieces  # some ids complete no character on their own (multi-byte UTF-8)
    step = tiny_tokenizer.stream_decoder(skip_special=True)
    assert "".join(step(i) for i in ids) == text


# --- loading -----------------------------------------------------------------------------------

def test_load_from_directory_or_file(tiny_tokenizer_dir: Path, tiny_tokenizer: Tokenizer) -> None:
    text = "a checkpoint holds tokenizer.json"
    assert load_tokenizer(tiny_tokenizer_dir).encode(text) == tiny_tokenizer.encode(text)
    assert load_tokenizer(tiny_tokenizer_dir / "tokenizer.json").encode(text) == tiny_tokenizer.encode(text)


def test_load_errors_are_one_line(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    with pytest.raises(FileNotFoundError) as excinfo:
        load_tokenizer(tmp_path / "nowhere")
    _one_line_error(excinfo, "nowhere")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError) as excinfo:
        load_tokenizer(tmp_path)
    _one_line_error(excinfo, "tokenizer.json")
    # a tokenizer.json whose specials are out of place is rejected, not silently mis-indexed
    data = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|eot_id|>"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError) as excinfo:
        load_tokenizer(tmp_path)
    _one_line_error(excinfo, "<|eot_id|>")


# --- training inputs ---------------------------------------------------------------------------

def test_train_from_shards_directories_and_globs(tmp_path: Path, tiny_corpus: Callable[..., str]) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    # "zyxquorble" only exists in the shards' txt members: BPE learns it iff they were read.
    text = tiny_corpus(30_000, seed=2)
    marked = " zyxquorble".join(text[i:i + 100] for i in range(0, len(text), 100))
    half = len(marked) // 2
    _write_shard(shards / "text-000000.tar", [{"txt": marked[:half].encode()}, {"json": b"{}"}])
    _write_shard(shards / "text-000001.tar", [{"txt": marked[half:].encode(), "json": b"{}"}])
    extra = tmp_path / "extra.txt"
    extra.write_text(tiny_corpus(20_000, seed=3))
    for inputs in ([shards], [str(shards / "*.tar"), extra], [shards / "text-000000.tar", shards / "text-000001.tar"]):
        path = train_tokenizer(inputs, vocab_size=600, out_dir=tmp_path / "out")
        tok = load_tokenizer(path)
        assert tok.vocab_size == 600 and len(tok.encode(" zyxquorble")) == 1


def test_training_writes_loadable_hf_files(tiny_tokenizer_dir: Path) -> None:
    config = json.loads((tiny_tokenizer_dir / "tokenizer_config.json").read_text())
    tokens = json.loads((tiny_tokenizer_dir / "special_tokens_map.json").read_text())
    assert tokens == {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                      "pad_token": "<|finetune_right_pad_id|>"}
    assert {k: config[k] for k in tokens} == tokens
    from text.chat_format import CHAT_TEMPLATE

    assert config["chat_template"] == CHAT_TEMPLATE


@pytest.mark.parametrize("inputs, vocab_size, fragment", [
    ([], 1024, "no tokenizer inputs"),
    (["missing.txt"], 1024, "missing.txt"),
    (["nothing-*.tar"], 1024, "nothing-*.tar"),
    (["corpus.txt"], 400, "vocab_size 400"),
    (["corpus.txt"], 100_000, "corpus too small"),
    (["empty.txt"], 1024, "no text"),
    (["emptydir"], 1024, "emptydir"),
    (["binary.txt"], 1024, "binary.txt"),
    (["bad.tar"], 1024, "bad.tar"),
])
def test_training_errors_are_one_line(tmp_path: Path, tiny_corpus: Callable[..., str], inputs: list[str],
                                      vocab_size: int, fragment: str) -> None:
    (tmp_path / "corpus.txt").write_text(tiny_corpus(5_000))
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xc3")
    (tmp_path / "bad.tar").write_bytes(b"this is not a tar file" * 50)
    with pytest.raises(ValueError) as excinfo:
        train_tokenizer([tmp_path / i if "*" not in i else str(tmp_path / i) for i in inputs],
                        vocab_size=vocab_size, out_dir=tmp_path / "out")
    _one_line_error(excinfo, fragment)


# --- Hugging Face ------------------------------------------------------------------------------

TEXTS = ["Hello world!", "  two  spaces\n\nand a paragraph 12345", "Zürich café 東京 🎉", "", "'s 'LL x\r\n"]


def test_pretrainedtokenizerfast_gives_identical_ids(tiny_tokenizer_dir: Path, tiny_tokenizer: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tiny_tokenizer_dir / "tokenizer.json"))
    for text in TEXTS:
        assert fast.encode(text, add_special_tokens=False) == tiny_tokenizer.encode(text)
        assert fast.decode(tiny_tokenizer.encode(text)) == text


def test_autotokenizer_loads_bos_eos_pad_and_template(tmp_path: Path, tiny_tokenizer_dir: Path,
                                                     tiny_tokenizer: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    save_hf_tokenizer_files(tiny_tokenizer_dir / "tokenizer.json", tmp_path / "export")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "export")
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == \
        (tiny_tokenizer.bos_id, tiny_tokenizer.eos_id, tiny_tokenizer.pad_id)
    assert len(hf) == V + 8 and hf.chat_template
    for text in TEXTS:
        assert hf(text)["input_ids"] == tiny_tokenizer.encode(text, bos=True)
