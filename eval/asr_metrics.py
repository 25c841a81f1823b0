"""ASR metrics (llama3-spec §5.7): WER and CER with jiwer after the Whisper English text normaliser.

Both sides are normalised first (`whisper_normalizer.english.EnglishTextNormalizer`: lower case,
punctuation removed, "Mr." → "mister", spelled-out and written numbers unified, British → American
spelling), so the scores compare words, not formatting.

    score_corpus(["Mr. Smith went to Washington."], ["mister smith went to washington"])
    # AsrScores(wer=0.0, cer=0.0, words=5, chars=31, …)

Corpus scores are total edits / total reference words (characters for CER), not a mean of
per-utterance rates; per-utterance rates come from `score_utterance`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import jiwer


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation, with surrounding/multiple spaces collapsed."""
    return " ".join(_normalizer()(text).split())


@dataclass(frozen=True)
class AsrScores:
    """Error rates and the edit counts behind them (word level, then character level)."""

    wer: float
    cer: float
    words: int
    """Reference words after normalisation."""
    word_errors: int
    """Substitutions + deletions + insertions at word level."""
    chars: int
    """Reference characters (spaces included) after normalisation."""
    char_errors: int

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(errors: int, total: int) -> float:
    # An empty reference scores 0 if the hypothesis is empty too, else every inserted unit is wrong.
    return errors / total if total else float(errors > 0)


def score_corpus(references: list[str], hypotheses: list[str]) -> AsrScores:
    """Corpus WER/CER of hypotheses against references (raw text; both are normalised here)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    w = jiwer.process_words(refs, hyps)
    c = jiwer.process_characters(refs, hyps)
    word_errors = w.substitutions + w.deletions + w.insertions
    char_errors = c.substitutions + c.deletions + c.insertions
    words = w.hits + w.substitutions + w.deletions
    chars = c.hits + c.substitutions + c.deletions
    return AsrScores(wer=_rate(word_errors, words), cer=_rate(char_errors, chars), words=words,
                     word_errors=word_errors, chars=chars, char_errors=char_errors)


def score_utterance(reference: str, hypothesis: str) -> AsrScores:
    """WER/CER of one utterance."""
    return score_corpus([reference], [hypothesis])


__all__ = ["normalize", "AsrScores", "score_corpus", "score_utterance"]
