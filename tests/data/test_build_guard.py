"""`herd data build guard`: labelled guard dialogues that text-sft trains on unchanged, with held-out
phrases, entities and framings so the test split is not the train split reworded."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from data.build_guard import CATEGORIES, _FRAMINGS, _HAZARDS, build, guard_prompt, parse_verdict, verdict_text
from data.debian import default_cache
from data.fetch import fetch_sources
from data.shards import ShardReader, split_shards
from train.stages.chat_data import DialogueBatcher, decode_json

CACHE = default_cache()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    fetch_sources(CACHE, ["text"])  # idempotent: a no-op once the cache holds the packages
    out = tmp_path_factory.mktemp("guard")
    build(out, preset="tiny", seed=0, cache=CACHE)
    return out, {split: list(ShardReader(split_shards(out, split), decode=decode_json, epochs=1, shuffle=False))
                 for split in ("train", "validation", "test")}


def test_every_split_covers_every_category_and_both_roles(built) -> None:
    out, splits = built
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "guard" and set(manifest["categories"]) == set(CATEGORIES) and len(CATEGORIES) == 14
    for split, examples in splits.items():
        assert manifest["splits"][split]["count"] == len(examples)
        unsafe = [e for e in examples if e["label"] == "unsafe"]
        assert {e["category"] for e in unsafe} == set(CATEGORIES)
        assert {(e["role"], e["label"]) for e in examples} == {("user", "safe"), ("user", "unsafe"),
                                                               ("agent", "safe"), ("agent", "unsafe")}
        assert 0.3 < len(unsafe) / len(examples) < 0.6
        for e in examples:
            assert e["messages"][1]["content"] == verdict_text(e["category"])
            assert e["messages"][0]["content"] == guard_prompt(e["conversation"], e["role"])
    assert Counter(e["kind"] for e in splits["train"])["real"] > 1000  # benign requests from the corpus


def _request_parts(text: str) -> set[str]:
    """The hazard action phrases (with their entity) a request contains."""
    found = set()
    for actions, entities, _ in _HAZARDS.values():
        for action in actions:
            for entity in entities:
                if action.format(e=entity).lower() in text.lower():  # "{A}." capitalises the action
                    found.add(action.format(e=entity).lower())
    return found


def test_held_out_phrases_entities_and_framings(built) -> None:
    _, splits = built
    requests = {split: [e["conversation"][0]["content"] for e in examples if e["kind"] == "harmful"]
                for split, examples in splits.items()}
    train_text = " ".join(requests["train"]).lower()
    for split in ("validation", "test"):
        assert not set(requests[split]) & set(requests["train"])
        for request in requests[split][:60]:
            (part,) = _request_parts(request)
            assert part not in train_text
    test_only = [f.split("{a}")[0] for f in _FRAMINGS["test"]]
    assert not any(r.startswith(p) for r in requests["train"] for p in test_only)
    assert any(r.startswith(p) for r in requests["test"] for p in test_only)
    benign = {split: {e["conversation"][0]["content"] for e in examples if e["label"] == "safe"}
              for split, examples in splits.items()}
    lookalikes = {q for _, _, qs in _HAZARDS.values() for q in qs}
    assert not (benign["test"] & benign["train"]) & lookalikes


def test_sft_batcher_reads_guard_shards_and_trains_on_the_verdict_only(built, tiny_tokenizer) -> None:
    out, _ = built
    batcher = DialogueBatcher(split_shards(out, "train"), tiny_tokenizer, seq_len=512, batch_size=4, epochs=1)
    batch = next(iter(batcher))
    for row_tokens, row_targets in zip(batch["tokens"], batch["targets"]):
        supervised = [int(t) for t in row_targets if t != -100]
        text = tiny_tokenizer.decode(supervised, skip_special=True).strip()
        assert re.fullmatch(r"safe|unsafe\nS\d+", text), text
        assert supervised[-1] == tiny_tokenizer.eot_id


@pytest.mark.parametrize("raw, expected", [("safe", ("safe", None)), ("unsafe\nS9", ("unsafe", "S9")),
                                           ("  unsafe S14 ", ("unsafe", "S14")), ("unsafe", ("unsafe", None)),
                                           ("unsafe\nS99", ("unsafe", None)), ("", ("safe", None)),
                                           ("I think it is unsafe", ("safe", None))])
def test_parse_verdict(raw, expected) -> None:
    assert parse_verdict(raw) == expected


def test_guard_prompt_names_the_role_and_rejects_others() -> None:
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    prompt = guard_prompt(conversation, "agent")
    assert "User: hi\n\nAgent: hello" in prompt and prompt.endswith("ONLY THE LAST Agent message.")
    with pytest.raises(ValueError, match="user or agent"):
        guard_prompt(conversation, "system")
