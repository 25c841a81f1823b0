"""Heuristic document filters (Llama 3 §3.1.1; thresholds are ours, the paper publishes none).

- `duplicated_ngram_fraction` — Gopher (Rae et al. 2021): the fraction of characters inside word
  n-grams that occur more than once; repetitive text (logs, lists, spam) scores high.
- `dirty_words` — counts of words from a small list (the spirit of C4's "bad words" list,
  Raffel et al. 2020), to catch adult text.
- `kl_divergence` — KL(document unigram distribution ‖ corpus distribution), to drop outliers.
- `shape_stats` — length and symbol ratios: words, mean word length, share of words with a
  letter, symbol-to-word ratio, share of non-alphanumeric characters.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

__all__ = ["words", "duplicated_ngram_fraction", "DIRTY_WORDS", "dirty_word_count", "UnigramModel",
           "ShapeStats", "shape_stats"]

_TOKEN = re.compile(r"[a-z0-9']+")

# A deliberately short list: explicit sexual terms and the strongest slurs-free obscenities.
DIRTY_WORDS = frozenset("""
porn porno pornographic xxx nude nudes naked sex sexy sexual orgasm orgy erotic erotica fetish
milf hentai dildo vibrator blowjob handjob cum cumshot masturbate masturbation horny slut whore
hooker escort stripper boobs tits pussy cock dick penis vagina anal fuck fucking fucked shit
""".split())


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def duplicated_ngram_fraction(tokens: list[str], n: int) -> float:
    """Fraction of characters (of word tokens) covered by word n-grams that occur ≥ 2 times."""
    if len(tokens) < n:
        return 0.0
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(tokens)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            for j in range(i, i + n):
                covered[j] = True
    total = sum(len(t) for t in tokens)
    return sum(len(t) for t, c in zip(tokens, covered) if c) / max(total, 1)


def dirty_word_count(tokens: list[str]) -> int:
    return sum(1 for t in tokens if t in DIRTY_WORDS)


class UnigramModel:
    """Corpus word distribution for KL outliers, add-one smoothed over vocabulary + 1 (unseen)."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.total = sum(counts.values())
        self.vocab = len(counts) + 1

    @classmethod
    def fit(cls, texts: list[str]) -> "UnigramModel":
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(text))
        return cls(counts)

    def prob(self, word: str) -> float:
        return (self.counts.get(word, 0) + 1) / (self.total + self.vocab)

    def kl_divergence(self, tokens: list[str]) -> float:
        """KL(p_doc ‖ p_corpus) in nats, p_doc the document's maximum-likelihood unigrams."""
        if not tokens:
            return 0.0
        doc = Counter(tokens)
        n = len(tokens)
        return sum(c / n * math.log((c / n) / self.prob(w)) for w, c in doc.items())


@dataclass(frozen=True)
class ShapeStats:
    words: int
    mean_word_length: float
    alpha_word_fraction: float
    """Share of whitespace-separated words containing a letter (Gopher: ≥ 0.8)."""
    symbol_word_ratio: float
    """(# + … + ellipses) per word (Gopher: ≤ 0.1)."""
    non_alnum_fraction: float
    """Share of non-space characters that are neither letters nor digits (ASCII art, tables)."""


def shape_stats(text: str) -> ShapeStats:
    raw = text.split()
    n = len(raw)
    chars = [c for c in text if not c.isspace()]
    symbols = text.count("#") + text.count("...") + text.count("…")
    return ShapeStats(
        words=n,
        mean_word_length=sum(len(w) for w in raw) / n if n else 0.0,
        alpha_word_fraction=sum(1 for w in raw if any(c.isalpha() for c in w)) / n if n else 0.0,
        symbol_word_ratio=symbols / n if n else 0.0,
        non_alnum_fraction=sum(1 for c in chars if not c.isalnum()) / len(chars) if chars else 0.0,
    )
