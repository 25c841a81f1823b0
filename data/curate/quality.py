"""Model-based quality score, CCNet style (Wenzek et al. 2020; Llama 3 §3.1.1 uses classifiers).

CCNet scores each document by its perplexity under a KenLM 5-gram trained on Wikipedia and keeps
the low-perplexity ones. We have no Wikipedia, so the reference is the corpus itself: a character
4-gram model, Jelinek–Mercer interpolated (λ = 0.5, 0.25, 0.15, 0.07 for 4- to 1-grams and 0.03
uniform over 256 byte values, so nothing has probability 0), fitted on a seeded sample of the
documents that survived the earlier filters. Characters rather than words make the score
insensitive to rare names and vocabulary while gibberish, markup and foreign-language text
score far higher. A document is dropped when its per-character perplexity exceeds `factor` × the
corpus median — a relative threshold, so ordinary text is never touched.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

__all__ = ["CharNgramLM"]

ORDER = 4
LAMBDAS = (0.5, 0.25, 0.15, 0.07)  # 4-gram … unigram; the rest (0.03) is uniform


class CharNgramLM:
    def __init__(self, counts: list[Counter], lambdas: tuple[float, ...] = LAMBDAS) -> None:
        self.counts = counts  # counts[k]: (k+1)-gram counts; counts of contexts are counts[k-1]
        self.total = sum(counts[0].values())
        self.lambdas = lambdas
        self.uniform = 1.0 - sum(lambdas)

    @staticmethod
    def _clean(text: str) -> str:
        return " ".join(text.lower().split())

    @classmethod
    def fit(cls, texts: list[str], *, max_chars: int = 2_000_000, seed: int = 0) -> "CharNgramLM":
        """Fit on a seeded sample of `texts` holding at most about `max_chars` characters."""
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        counts = [Counter() for _ in range(ORDER)]
        used = 0
        for i in order:
            text = "\x02" + cls._clean(texts[i])[:5000] + "\x03"
            for k in range(ORDER):
                counts[k].update(text[j:j + k + 1] for j in range(len(text) - k))
            used += len(text)
            if used >= max_chars:
                break
        return cls(counts)

    def perplexity(self, text: str, *, max_chars: int = 1000) -> float:
        """Per-character perplexity of the first `max_chars` characters."""
        text = "\x02" + self._clean(text)[:max_chars] + "\x03"
        counts, lambdas = self.counts, self.lambdas
        logp = 0.0
        for j in range(1, len(text)):
            p = self.uniform / 256 + lambdas[-1] * counts[0].get(text[j], 0) / self.total
            for k in range(1, ORDER):
                if j - k < 0:
                    break
                context = counts[k - 1].get(text[j - k:j], 0)
                if not context:
                    break
                p += lambdas[-1 - k] * counts[k].get(text[j - k:j + 1], 0) / context
            logp += math.log(p)
        return math.exp(-logp / max(len(text) - 1, 1))

    def median_perplexity(self, texts: list[str]) -> float:
        return statistics.median(self.perplexity(t) for t in texts) if texts else 0.0
