"""The text build on the real corpora, fetched from the Debian archive into the cache on first use."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from data.build_text import assign_split, build, normalise
from data.curate.dedup import NearDuplicateIndex
from data.debian import default_cache
from data.fetch import fetch_sources
from data.shards import ShardReader, decode_text, split_shards
from data.sources import SOURCES
from data.text_sources import Doc

CACHE = default_cache()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    fetch_sources(CACHE, ["text"])  # idempotent: a no-op once the cache holds the packages
    out = tmp_path_factory.mktemp("text")
    return out, build(out, preset="tiny", seed=0, cache=CACHE)


def _split_docs(out: Path) -> dict[str, list[dict]]:
    return {split: list(ShardReader(split_shards(out, split), decode=decode_text, epochs=1, shuffle=False))
            for split in ("train", "validation", "test")}


def test_build_writes_three_splits_with_a_manifest(built) -> None:
    out, summary = built
    manifest = json.loads((out / "manifest.json").read_text())
    docs = _split_docs(out)
    for split in ("train", "validation", "test"):
        assert manifest["splits"][split]["count"] == len(docs[split]) == summary["splits"][split]["documents"] > 0
    assert summary["splits"]["train"]["words"] > 1_000_000
    assert {s["name"] for s in manifest["sources"]} == {s.name for s in SOURCES["text"]}
    assert all(s["licence"] and s["sha256"] for s in manifest["sources"])
    sources = {d["json"]["source"] for d in docs["train"]}
    assert sources == {"austen", "mobydick", "harvard", "fortunes", "wordnet"}


def test_persuasion_is_validation_only_and_splits_do_not_leak(built) -> None:
    out, _ = built
    docs = _split_docs(out)
    titles = {split: {d["json"]["title"] for d in ds} for split, ds in docs.items()}
    assert "Persuasion" in titles["validation"]
    assert "Persuasion" not in titles["train"] | titles["test"]
    groups = {split: {d["json"]["group"] for d in ds} for split, ds in docs.items()}
    assert not groups["train"] & groups["validation"] and not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    texts = {split: {normalise(d["txt"]) for d in ds} for split, ds in docs.items()}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]


@pytest.mark.slow
def test_no_held_out_document_near_duplicates_a_train_document(built) -> None:
    docs = _split_docs(built[0])
    index = NearDuplicateIndex()
    for d in docs["train"]:
        index.add(d["__key__"], d["txt"])
    for split in ("validation", "test"):
        for d in docs[split]:
            signature = index.signature(d["txt"])
            twins = [k for k in index.lsh.query(signature) if signature.jaccard(index.signatures[k]) >= index.threshold]
            assert not twins, (d["__key__"], twins)


def test_assignment_depends_on_group_and_seed_only(built) -> None:
    docs = [Doc(d["__key__"], d["json"]["source"], d["json"]["title"], d["txt"], d["json"]["group"])
            for ds in _split_docs(built[0]).values() for d in ds]
    by_group = defaultdict(set)
    for doc in docs:
        by_group[doc.group].add(assign_split(doc, seed=0))
    assert all(len(s) == 1 for s in by_group.values())
    moved = sum(assign_split(d, 0) != assign_split(d, 1) for d in docs)
    assert 0 < moved < len(docs) // 4


@pytest.mark.slow
def test_build_is_deterministic_for_a_seed(built, tmp_path: Path) -> None:
    out, summary = built
    again = build(tmp_path, preset="tiny", seed=0, cache=CACHE)
    assert json.loads((tmp_path / "manifest.json").read_text())["splits"] == \
        json.loads((out / "manifest.json").read_text())["splits"]  # same shards, byte for byte (sha256)
    assert again["splits"] == summary["splits"]


def test_no_sentence_the_speech_stage_holds_out_is_train_text(built) -> None:
    """The frozen LM must not have read a held-out utterance's transcript (data.build_speech)."""
    from data.build_speech import prompt_splits
    from data.text_sources import harvard_sentences

    held_out = [s for split in ("validation", "test") for s in prompt_splits(harvard_sentences(CACHE))[split]]
    train_text = "\n".join(d["txt"] for d in _split_docs(built[0])["train"])
    assert len(held_out) >= 70 and not [s for s in held_out if s in train_text]
