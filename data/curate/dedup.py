"""De-duplication (Llama 3 §3.1.1): exact documents, near-duplicate documents, repeated lines.

- **Exact**: SHA-1 of the normalised text (lower case, whitespace collapsed).
- **Near-duplicates**: MinHash LSH (`datasketch`). The paper publishes no parameters; ours:
  shingles are word 5-grams (`SHINGLE = 5`; a document shorter than that is one shingle);
  `NUM_PERM = 128` permutations split into `BANDS = 16` bands of `ROWS = 8` rows, so a pair
  becomes a candidate with probability 1 − (1 − J⁸)¹⁶: 61 % at Jaccard J = 0.7, 95 % at 0.8,
  1 % at 0.4. A candidate is a duplicate if its estimated Jaccard ≥ `THRESHOLD = 0.8`; the
  first document seen is kept. One index can span several splits (train first), so a
  validation/test document that near-duplicates a train document is removed (no leakage).
- **Lines** (ccNet style): a normalised line (lower case, digits → 0, punctuation dropped) that
  occurs more than `max_repeats` times in a bucket of documents is removed from all of them
  (the paper: more than 6 times per bucket of 30M documents); our buckets are `bucket_size`
  consecutive documents of a split.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["SHINGLE", "NUM_PERM", "BANDS", "ROWS", "THRESHOLD", "exact_key", "shingles", "NearDuplicateIndex",
           "normalise_line", "repeated_lines", "remove_lines", "split_buckets"]

SHINGLE = 5
NUM_PERM = 128
BANDS, ROWS = 16, 8
THRESHOLD = 0.8

_WORD = re.compile(r"\w+", re.UNICODE)


def exact_key(text: str) -> str:
    return hashlib.sha1(re.sub(r"\s+", " ", text.lower()).strip().encode()).hexdigest()


def shingles(text: str, size: int = SHINGLE) -> set[bytes]:
    """Word `size`-grams of the lower-cased text (the whole text if it has fewer words)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {" ".join(words).encode()}
    return {" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)}


class NearDuplicateIndex:
    """MinHash LSH over documents; `add(key, text)` returns the key of an earlier near-duplicate
    (and does not index the new one), or None (and indexes it)."""

    def __init__(self, *, num_perm: int = NUM_PERM, bands: int = BANDS, rows: int = ROWS,
                 threshold: float = THRESHOLD, shingle: int = SHINGLE, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        if bands * rows != num_perm:
            raise ValueError(f"bands × rows must equal num_perm ({bands} × {rows} != {num_perm})")
        self.num_perm, self.threshold, self.shingle, self.seed = num_perm, threshold, shingle, seed
        self.lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
        self.signatures: dict[str, object] = {}

    def signature(self, text: str):
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.num_perm, seed=self.seed)
        minhash.update_batch(list(shingles(text, self.shingle)))
        return minhash

    def add(self, key: str, text: str) -> str | None:
        minhash = self.signature(text)
        best, best_j = None, self.threshold
        for other in self.lsh.query(minhash):
            j = minhash.jaccard(self.signatures[other])
            if j >= best_j:
                best, best_j = other, j
        if best is not None:
            return best
        self.lsh.insert(key, minhash)
        self.signatures[key] = minhash
        return None


_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalise_line(line: str) -> str:
    """ccNet's line normalisation: lower case, digits → 0, accents and punctuation removed."""
    line = unicodedata.normalize("NFD", line.lower())
    line = "".join(c for c in line if not unicodedata.combining(c))
    line = re.sub(r"\d", "0", _PUNCT.sub("", line))
    return re.sub(r"\s+", " ", line).strip()


def repeated_lines(texts: Iterable[str], max_repeats: int) -> set[str]:
    """Normalised lines occurring more than `max_repeats` times across `texts` (one bucket)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(n for n in map(normalise_line, text.split("\n")) if n)
    return {line for line, count in counts.items() if count > max_repeats}


def remove_lines(text: str, banned: set[str]) -> tuple[str, int]:
    """`text` without its banned lines (blank runs collapsed) and how many lines went."""
    kept, removed = [], 0
    for line in text.split("\n"):
        if line.strip() and normalise_line(line) in banned:
            removed += 1
            continue
        kept.append(line)
    if not removed:
        return text, 0
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n"), removed


def split_buckets(keys: Sequence[str], bucket_size: int) -> list[range]:
    return [range(i, min(i + bucket_size, len(keys))) for i in range(0, len(keys), bucket_size)]
