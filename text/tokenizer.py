"""The Llama 3 byte-level BPE tokenizer: training on our corpus, loading, and Hugging Face files
(llama3-spec §1.7; id layout in docs/internals.md).

A tokenizer of `vocab_size` V has V − 256 BPE ids (the 256 byte tokens first), then the 256 Llama 3
special tokens at V − 256 … V − 1, then 8 multimodal tokens at V … V + 7 (`<|image|>` = V, as
Llama 3.2's 128256). The LM's tables have V rows; only the fusion wrapper's extra rows see V + k.

    path = train_tokenizer([Path("corpus.txt"), Path("shards/")], vocab_size=8192, out_dir=Path("tok"))
    tok = load_tokenizer(path)            # or a checkpoint directory holding tokenizer.json
    ids = tok.encode("Hello", bos=True)   # special ids come only from bos/eos and the chat format

Text that looks like a special token ("<|eot_id|>" typed by a user) is always encoded as plain
text: the wrapped `tokenizers.Tokenizer` runs with `encode_special_tokens = True`.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers

from text.chat_format import CHAT_TEMPLATE

__all__ = [
    "SPLIT_PATTERN", "SPECIAL_TOKENS", "MULTIMODAL_TOKENS", "NUM_SPECIAL", "Tokenizer",
    "train_tokenizer", "load_tokenizer", "save_hf_tokenizer_files",
]

SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""The Llama 3 (tiktoken) pre-tokenisation pattern: words, 1–3 digit groups, punctuation runs, spaces."""

NUM_SPECIAL = 256
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(2, NUM_SPECIAL - 9)),
)
"""The 256 Llama 3 special tokens in id order (offset 0 ↔ id V − 256)."""
MULTIMODAL_TOKENS: tuple[str, ...] = (
    "<|image|>", "<|video|>", "<|speech_start|>", "<|speech_end|>",
    *(f"<|reserved_multimodal_token_{i}|>" for i in range(4)),
)
"""The 8 tokens of the fusion wrapper's extra embedding rows, ids V … V + 7."""

_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_WDS_NAME = re.compile(r"^((?:.*/|)[^./]*)(?:[.]([^/]*))?$")  # webdataset key + extension
_CHUNK_CHARS = 1 << 20  # text files are streamed to the trainer in ~1M-character chunks of whole lines
_MIN_VOCAB = 256 + NUM_SPECIAL  # every byte needs a BPE id, and the specials need theirs


class Tokenizer:
    """Our wrapper around a `tokenizers.Tokenizer` with the herd id layout checked at load time."""

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        bos = backend.token_to_id(SPECIAL_TOKENS[0])
        if bos is None:
            raise ValueError(f"tokenizer has no {SPECIAL_TOKENS[0]} token; not a herd/Llama 3 tokenizer")
        self.vocab_size = bos + NUM_SPECIAL
        """V: BPE ids + the 256 specials; the LM's embedding rows (multimodal ids excluded)."""
        names = SPECIAL_TOKENS + MULTIMODAL_TOKENS
        self.special: dict[str, int] = {name: bos + i for i, name in enumerate(names)}
        for name, expected in self.special.items():
            if backend.token_to_id(name) != expected:
                raise ValueError(f"special token {name} has id {backend.token_to_id(name)}, expected {expected}")
        if backend.get_vocab_size(with_added_tokens=False) != bos:
            raise ValueError(f"BPE vocabulary has {backend.get_vocab_size(with_added_tokens=False)} ids, "
                             f"expected {bos} (specials must follow the BPE ids)")
        self._backend = backend
        # The one switch that makes user text like "<|eot_id|>" plain text; special ids are only
        # ever inserted by id (bos/eos flags, ChatFormat). Never saved, so HF files keep defaults.
        self._backend.encode_special_tokens = True

    @classmethod
    def from_file(cls, path: Path) -> Tokenizer:
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped `tokenizers.Tokenizer` (encode_special_tokens is on)."""
        return self._backend

    @property
    def n_ids(self) -> int:
        """All ids the tokenizer can produce: V + 8 multimodal ids."""
        return self.vocab_size + len(MULTIMODAL_TOKENS)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`, optionally with `<|begin_of_text|>` / `<|end_of_text|>` around it."""
        ids = self._backend.encode(text, add_special_tokens=False).ids
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def encode_batch(self, texts: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[list[int]]:
        """`encode` for many texts at once (parallel in the Rust backend)."""
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        return [[self.bos_id] * bos + e.ids + [self.eos_id] * eos for e in encodings]

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """The text of `ids`; with skip_special the special and multimodal tokens are left out."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.n_ids]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the tokenizer's range 0…{self.n_ids - 1}")
        return self._backend.decode(ids, skip_special_tokens=skip_special)

    def stream_decoder(self, *, skip_special: bool = False) -> Callable[[int], str]:
        """For streaming output: a function id → the new text it completes ("" while a multi-byte
        UTF-8 character is still incomplete, where decode([id]) would print U+FFFD)."""
        stream = decoders.DecodeStream(skip_special_tokens=skip_special)
        return lambda token_id: stream.step(self._backend, int(token_id)) or ""

    def is_special(self, token_id: int) -> bool:
        """True for the 256 Llama 3 specials and the 8 multimodal ids."""
        return token_id >= self.vocab_size - NUM_SPECIAL

    @property
    def bos_id(self) -> int:
        return self.special["<|begin_of_text|>"]

    @property
    def eos_id(self) -> int:
        return self.special["<|end_of_text|>"]

    @property
    def eot_id(self) -> int:
        return self.special["<|eot_id|>"]

    @property
    def eom_id(self) -> int:
        return self.special["<|eom_id|>"]

    @property
    def pad_id(self) -> int:
        return self.special["<|finetune_right_pad_id|>"]

    @property
    def start_header_id(self) -> int:
        return self.special["<|start_header_id|>"]

    @property
    def end_header_id(self) -> int:
        return self.special["<|end_header_id|>"]

    @property
    def python_tag_id(self) -> int:
        return self.special["<|python_tag|>"]

    @property
    def image_id(self) -> int:
        return self.special["<|image|>"]

    @property
    def video_id(self) -> int:
        return self.special["<|video|>"]

    @property
    def speech_start_id(self) -> int:
        return self.special["<|speech_start|>"]

    @property
    def speech_end_id(self) -> int:
        return self.special["<|speech_end|>"]

    @property
    def stop_tokens(self) -> tuple[int, ...]:
        """Generation stops at any of these: end_of_text, eom, eot (llama3-spec §1.7)."""
        return (self.eos_id, self.eom_id, self.eot_id)

    def __len__(self) -> int:
        return self.n_ids

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, n_ids={self.n_ids})"


def load_tokenizer(path: Path | str) -> Tokenizer:
    """Load a tokenizer from a checkpoint/export directory holding tokenizer.json, or the file itself."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    try:
        backend = tokenizers.Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust loader's messages are multi-line serde errors
        raise ValueError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
    try:
        return Tokenizer(backend)
    except ValueError as e:
        raise ValueError(f"{file}: {e}") from None


def train_tokenizer(inputs: Sequence[Path | str], *, vocab_size: int, out_dir: Path | str) -> Path:
    """Train byte-level BPE with the Llama 3 split pattern on text files and webdataset text shards.

    inputs: text files (UTF-8), `.tar` shards (samples' `txt` member), directories (searched for
    both) or glob patterns. Text is streamed to the trainer, never all held in memory.
    Writes out_dir/tokenizer.json plus the Hugging Face config files; returns the tokenizer.json path.
    """
    if vocab_size < _MIN_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} is too small: need at least {_MIN_VOCAB} "
                         f"(256 byte tokens + {NUM_SPECIAL} special tokens)")
    files = _resolve_inputs(inputs)
    n_bpe = vocab_size - NUM_SPECIAL
    backend = _empty_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=n_bpe, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    counter = _CharCounter(_iter_texts(files))
    backend.train_from_iterator(counter, trainer=trainer)
    if counter.chars == 0:
        raise ValueError(f"no text found in tokenizer inputs: {', '.join(map(str, files))}")
    learned = backend.get_vocab_size(with_added_tokens=False)
    if learned != n_bpe:
        raise ValueError(f"corpus too small: BPE learned {learned} of {n_bpe} ids for vocab_size {vocab_size}; "
                         "add text or lower vocab_size")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in SPECIAL_TOKENS + MULTIMODAL_TOKENS])
    bos = SPECIAL_TOKENS[0]
    # As Llama 3's own tokenizer.json: HF `tok(text)` prepends <|begin_of_text|> (add_special_tokens).
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, n_bpe)]),
    ])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    backend.save(str(path))
    save_hf_tokenizer_files(path, out_dir)
    return path


def save_hf_tokenizer_files(tokenizer_json: Path | str, out_dir: Path | str, *,
                            model_max_length: int | None = None) -> None:
    """Write tokenizer.json, tokenizer_config.json (bos/eos/pad, chat template) and
    special_tokens_map.json so `AutoTokenizer.from_pretrained(out_dir)` loads a
    `PreTrainedTokenizerFast`. Note HF's own tokenizer parses special-token text (HF default)."""
    tokenizer_json, out_dir = Path(tokenizer_json), Path(out_dir)
    load_tokenizer(tokenizer_json)  # validates the layout before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "tokenizer.json"
    if not target.exists() or not target.samefile(tokenizer_json):
        shutil.copyfile(tokenizer_json, target)
    tokens = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
              "pad_token": "<|finetune_right_pad_id|>"}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **tokens,
        # Llama 3's config sets this True, which rewrites " ." → "." on decode and breaks round-trips.
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": model_max_length if model_max_length is not None else 1_000_000_000_000_000_000,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(tokens, indent=2) + "\n")


def _empty_tokenizer() -> tokenizers.Tokenizer:
    """Untrained byte-level BPE with Llama 3's pre-tokeniser and decoder (as its tokenizer.json)."""
    # ignore_merges: a pre-token that is itself in the vocabulary is one token, as in tiktoken.
    backend = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    return backend


def _resolve_inputs(inputs: Sequence[Path | str]) -> list[Path]:
    """Expand directories and globs into a sorted list of text files and shards; fail on missing."""
    if not inputs:
        raise ValueError("no tokenizer inputs given")
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_input_file(p))
            if not found:
                raise ValueError(f"{path} holds no .tar shards or .txt files")
            files.extend(found)
        elif any(c in str(item) for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
            if not matches:
                raise ValueError(f"no files match {item}")
            files.extend(matches)
        else:
            raise ValueError(f"tokenizer input not found: {path}")
    return files


def _is_input_file(path: Path) -> bool:
    return path.name.endswith(_SHARD_SUFFIXES) or path.suffix == ".txt"


def _iter_texts(files: Sequence[Path]) -> Iterator[str]:
    for path in files:
        yield from _shard_texts(path) if path.name.endswith(_SHARD_SUFFIXES) else _file_texts(path)


def _file_texts(path: Path) -> Iterator[str]:
    """A UTF-8 text file in chunks of whole lines (newlines kept: the split pattern sees them)."""
    chunk: list[str] = []
    size = 0
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for line in f:
                chunk.append(line)
                size += len(line)
                if size >= _CHUNK_CHARS:
                    yield "".join(chunk)
                    chunk, size = [], 0
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason})") from None
    if chunk:
        yield "".join(chunk)


def _shard_texts(path: Path) -> Iterator[str]:
    """The `txt` member of every sample of a webdataset shard; other members are skipped.

    Read with streaming `tarfile` and webdataset's naming rule (key = name up to the first dot of
    the basename, extension = the rest): importing webdataset would import torch, seconds on a CPU.
    """
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and (_WDS_NAME.match(member.name)[2] or "").lower() == "txt":
                    yield tar.extractfile(member).read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: a txt member is not UTF-8 ({e.reason})") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read webdataset shard ({str(e).splitlines()[0]})") from None


class _CharCounter:
    """Wraps the text stream to count characters, so empty inputs get a clear error."""

    def __init__(self, texts: Iterator[str]) -> None:
        self._texts = texts
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            self.chars += len(text)
            yield text
