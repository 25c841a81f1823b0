"""The caption metrics against values computed by hand (independent of any herd model).

CIDEr-D (pycocoevalcap): per n-gram order n = 1..4, tf-idf vectors with idf = log(N_images / df),
a clipped cosine min(h, r)·r / (|h||r|), the length penalty exp(−δ²/2σ²) (δ = 0 here), mean over n,
×10, mean over references and images. Fixture (N = 2 images, one reference each, disjoint words):
- "Red cube." vs "red cube": unigrams and bigrams match exactly (cosine 1), no 3-/4-grams
  (cosine 0) → 10 · (1 + 1 + 0 + 0) / 4 = 5.0
- "blue cone" vs "blue ball": unigram weights all log 2; clipped dot log²2 over |h||r| = 2 log²2
  → 0.5; bigrams differ → 10 · 0.5 / 4 = 1.25
Corpus CIDEr-D = (5.0 + 1.25) / 2 = 3.125.

BLEU-4 "the cat sat on the mat" vs "the cat sat on a mat": clipped precisions 5/6, 3/5, 2/4, 1/3,
equal lengths (brevity penalty 1) → (5/6 · 3/5 · 1/2 · 1/3)^(1/4) = (1/12)^(1/4) ≈ 0.537285.
"""

import shutil

import pytest

from eval.caption_metrics import caption_scores, exact_match, normalize

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="PTB tokenizer needs java")


def test_cider_d_hand_computed():
    scores = caption_scores(["Red cube.", "blue cone"], [["red cube"], ["blue ball"]],
                            per_sample=True)
    assert [s["CIDEr-D"] for s in scores["per_sample"]] == pytest.approx([5.0, 1.25])
    assert scores["CIDEr-D"] == pytest.approx(3.125)
    assert scores["exact_match"] == 0.5 and scores["n"] == 2


def test_bleu4_hand_computed_and_identical():
    scores = caption_scores(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert scores["BLEU-4"] == pytest.approx((1 / 12) ** 0.25, abs=1e-6)
    scores = caption_scores(["a small red cube left of a blue ball"],
                            [["a small red cube left of a blue ball", "something else"]])
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


def test_exact_match_normalises_case_and_punctuation():
    assert normalize("  A Red,  cube. ") == "a red cube"
    assert exact_match(["A red cube.", "a cube"], [["a red cube"], ["a red cube", "cube"]]) == [1.0, 0.0]


def test_mismatched_inputs_are_errors():
    with pytest.raises(ValueError):
        caption_scores(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        caption_scores(["a"], [[]])
