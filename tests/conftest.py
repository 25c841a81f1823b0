"""Shared fixtures: a small tokenizer trained once per session on generated English text.

    def test_something(tiny_tokenizer):            # text.tokenizer.Tokenizer, vocab_size 1024
        ids = tiny_tokenizer.encode("hello", bos=True)

`tiny_tokenizer_dir` is its directory (tokenizer.json + HF config files), e.g. for checkpoints;
`tiny_corpus(n_chars, seed)` generates more of the same text.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from text.tokenizer import Tokenizer

TINY_VOCAB_SIZE = 1024

_WORDS = (
    "the of and to in is was for on that with as by it at from his her they be this are or an not "
    "which have had but one were all their there been has when who will more no if out so said what "
    "up its about into than them can only other new some could time these two may then do first any "
    "my now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little state "
    "good very make world still own see men work long get here between both life being under never "
    "day same another know while last might us great old year off come since against go came right "
    "used take three model token train image video speech music river mountain garden window letter "
    "question answer number system language computer learning small large quickly slowly beautiful "
    "café naïve über résumé Zürich señor"
).split()


def english_text(n_chars: int = 300_000, seed: int = 0) -> str:
    """Deterministic English-like text: sentences from a fixed word list, with numbers, punctuation,
    contractions and paragraph breaks, so BPE learns word pieces the Llama 3 pattern produces."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), rng.choice(["it's", "we'll", "don't", "they're"]))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99_999)))
        sentence = " ".join(words).capitalize() + rng.choice(".!?.,;") + rng.choice(["\n\n", "\n", " ", " "])
        parts.append(sentence)
        size += len(sentence)
    return "".join(parts)


@pytest.fixture(scope="session")
def tiny_corpus() -> Callable[..., str]:
    """`tiny_corpus(n_chars=300_000, seed=0)`: the deterministic English-like text generator."""
    return english_text


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with tokenizer.json (vocab_size 1024) and the Hugging Face tokenizer files."""
    from text.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("tiny_tokenizer")
    corpus = root / "corpus.txt"
    corpus.write_text(english_text(), encoding="utf-8")
    train_tokenizer([corpus], vocab_size=TINY_VOCAB_SIZE, out_dir=root / "tokenizer")
    return root / "tokenizer"


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> Tokenizer:
    """The session's small trained tokenizer."""
    from text.tokenizer import load_tokenizer

    return load_tokenizer(tiny_tokenizer_dir)
