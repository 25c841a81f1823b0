"""data.build_speech.plan: a `novel_fraction` of the train prompts come from the extra sentences;
validation and test keep their held-out Harvard prompts only."""

from __future__ import annotations

import numpy as np

from data.build_speech import plan, variant_split

VARIANTS = [f"v{i}" for i in range(200)]
HARVARD, NOVELS = [f"harvard {i}." for i in range(20)], [f"novel {i}." for i in range(50)]


def test_extra_prompts_take_their_share_of_the_train_split():
    assert any(variant_split(v) == "train" for v in VARIANTS)
    utterances = plan("train", 1000, HARVARD, VARIANTS, 0.0, np.random.default_rng(0), NOVELS, 0.6)
    share = np.mean([u.text in NOVELS for u in utterances])
    assert 0.55 < share < 0.65
    assert {u.text for u in utterances} <= set(HARVARD) | set(NOVELS)


def test_without_extra_prompts_nothing_changes():
    a = plan("test", 50, HARVARD, VARIANTS, 0.2, np.random.default_rng(1))
    b = plan("test", 50, HARVARD, VARIANTS, 0.2, np.random.default_rng(1), [], 0.6)
    assert a == b and all(u.text in HARVARD for u in a)
