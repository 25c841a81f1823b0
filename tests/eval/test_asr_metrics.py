"""WER/CER after the Whisper English normaliser, against hand-computed values (no model needed)."""

import pytest

from eval.asr_metrics import normalize, score_corpus, score_utterance


def test_normaliser_handles_titles_punctuation_and_case():
    assert normalize("Mr. Smith, went to WASHINGTON!") == "mister smith went to washington"
    assert normalize("  Hello,   world  ") == "hello world"


def test_formatting_differences_are_not_errors():
    s = score_utterance("Mr. Smith went to Washington.", "mister smith went to washington")
    assert (s.wer, s.cer, s.words, s.word_errors) == (0.0, 0.0, 5, 0)


def test_hand_computed_corpus_scores():
    refs = ["The cat sat on the mat.", "Hello, world!"]
    hyps = ["the cat sat on mat", "hello there world"]
    s = score_corpus(refs, hyps)
    # words: 1 deletion ("the") of 6 + 1 insertion ("there") of 2 → 2 / 8
    assert (s.word_errors, s.words) == (2, 8) and s.wer == pytest.approx(0.25)
    # chars: "the cat sat on the mat" (22) → 4 deleted ("the "); "hello world" (11) → 6 inserted
    assert (s.char_errors, s.chars) == (10, 33) and s.cer == pytest.approx(10 / 33)


def test_substitution_counts_once():
    s = score_utterance("a quick brown fox", "a quick brown box")
    assert s.wer == pytest.approx(1 / 4) and s.cer == pytest.approx(1 / 17)  # 17 characters, spaces included


def test_empty_references():
    assert score_utterance("", "").wer == 0.0
    assert score_utterance("", "something").wer == 1.0
    with pytest.raises(ValueError):
        score_corpus(["a"], [])
