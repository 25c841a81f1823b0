"""Curation: planted duplicates, near-duplicates, repeated lines, PII, junk and foreign text are each
caught by the right filter, and clean text passes untouched."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from data.curate import CurationConfig, curate_dataset
from data.curate.dedup import NearDuplicateIndex, remove_lines, repeated_lines
from data.curate.heuristics import UnigramModel, duplicated_ngram_fraction, words
from data.curate.language import identify_batch
from data.curate.pii import luhn_ok, scrub_pii
from data.curate.quality import CharNgramLM
from data.shards import ShardReader, decode_text, split_shards, write_manifest, write_shards

ADJECTIVES = "old young quiet tired cheerful clever nervous patient careful busy gentle stubborn".split()
NOUNS = "captain sailor doctor teacher farmer baker painter miller widow soldier".split()
ADVERBS = "slowly quickly proudly sadly quietly eagerly calmly nearly finally often".split()
VERBS = "visited watched painted described remembered followed admired repaired found left".split()
THINGS = "harbour garden cottage road letter bridge market orchard chapel window".split()
PREPOSITIONS = "before after during despite through beyond without until".split()
TIMES = "breakfast winter midnight noon dinner autumn church sunrise supper harvest".split()


def clean_docs(n: int, seed: int = 0) -> list[str]:
    """Varied, ordinary English paragraphs (distinct: each carries a unique count phrase)."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = [f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(ADVERBS)} {rng.choice(VERBS)} "
                     f"the {rng.choice(ADJECTIVES)} {rng.choice(THINGS)} {rng.choice(PREPOSITIONS)} "
                     f"{rng.choice(TIMES)}." for _ in range(rng.randint(6, 14))]
        sentences.insert(rng.randrange(len(sentences)), f"It was the {i + 1}th day of the journey.")
        docs.append(" ".join(sentences))
    return docs


_RNG = random.Random(2)
PLANTED = {
    "near": None,  # filled from a clean doc below
    "pii": ("Please write to jane.doe@example.com or call +1 (555) 123-4567 about the order. The card "
            "4111 1111 1111 1111 was charged from 192.168.0.12 and the village teacher walked to the harbour."),
    "ascii": "+---+---+---+\n| # | @ | # |\n+---+---+---+\n|=|=|=|=|=|=|\n+---+---+---+",
    "repeat": " ".join(["ERROR disk full at sector 7 retry now"] * 12) + " the end of the log.",
    "dirty": ("the old captain walked to the harbour. porn xxx nude sex porn xxx nude naked sex porn fuck "
              "xxx with great care before the rain began and the baker visited the garden."),
    "german": ("Der alte Kapitän ging zum Hafen, bevor der Regen begann. Meine Schwester schrieb über den "
               "langen Weg und wartete auf den Abendzug, während die Kinder schliefen."),
    "offtopic": " ".join(_RNG.choice(
        "quantum entropy lattice tensor gradient manifold eigenvalue spectrum kernel topology isomorphism "
        "differential polynomial integral vector matrix theorem lemma corollary proof axiom".split()) for _ in range(80)),
    "gibberish": " ".join("".join(_RNG.choice("qxzjkvwpfg") for _ in range(7)) for _ in range(60)),
}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    docs = clean_docs(300)
    samples = [{"__key__": f"clean{i:03d}", "txt": t, "json": {"source": "clean"}} for i, t in enumerate(docs)]
    planted = dict(PLANTED)
    near = docs[5].split(" ")
    near[3] = "suddenly"
    planted["near"] = " ".join(near)
    samples += [{"__key__": f"planted_{k}", "txt": v} for k, v in planted.items()]
    samples.append({"__key__": "planted_exact", "txt": docs[7]})
    boiler = "Subscribe to the Harbour Gazette for more stories!"
    for i in range(10, 20):  # the same boilerplate line appended to ten documents
        samples[i] = {**samples[i], "txt": samples[i]["txt"] + "\n" + boiler}
    rng = random.Random(1)
    rng.shuffle(samples)
    in_dir = tmp_path / "in"
    train = write_shards(samples, in_dir, "train", max_count=100)
    held = [{"__key__": "val_leak", "txt": docs[11]}, *({"__key__": f"val{i}", "txt": t}
                                                         for i, t in enumerate(clean_docs(20, seed=9)))]
    write_manifest(in_dir, kind="text", splits={"train": train, "validation": write_shards(held, in_dir, "validation")},
                   sources=[{"name": "synthetic", "licence": "CC0"}])
    return in_dir, docs


def _read(out: Path, split: str) -> dict[str, str]:
    return {s["__key__"]: s["txt"] for s in ShardReader(split_shards(out, split), decode=decode_text, epochs=1)}


def test_each_planted_problem_is_caught_and_clean_text_is_untouched(corpus, tmp_path: Path) -> None:
    in_dir, docs = corpus
    report = curate_dataset(in_dir, tmp_path / "out")
    kept = _read(tmp_path / "out", "train")
    removed_by = {key.split("/", 1)[1]: name for key, name in report["removed"].items() if key.startswith("train/")}
    assert removed_by.get("planted_exact") == "exact_dup" or removed_by.get("clean007") == "exact_dup"
    assert removed_by.get("planted_near") == "near_dup" or removed_by.get("clean005") == "near_dup"
    assert removed_by["planted_ascii"] == "length_symbols"
    assert removed_by["planted_repeat"] == "repetition"
    assert removed_by["planted_dirty"] == "dirty_words"
    assert removed_by["planted_german"] == "language"
    assert removed_by["planted_gibberish"] in ("language", "kl_outlier", "quality")
    assert removed_by["planted_offtopic"] in ("kl_outlier", "quality")
    for key in ("planted_ascii", "planted_repeat", "planted_dirty", "planted_german", "planted_gibberish",
                "planted_offtopic"):
        assert key not in kept
    # PII: kept, scrubbed
    assert "<EMAIL>" in kept["planted_pii"] and "<PHONE>" in kept["planted_pii"]
    assert "<CARD_NUMBER>" in kept["planted_pii"] and "<IP_ADDRESS>" in kept["planted_pii"]
    assert "example.com" not in kept["planted_pii"]
    # repeated boilerplate line: removed from the documents, which stay
    assert all("Harbour Gazette" not in t for t in kept.values())
    for i in range(10, 20):
        assert kept.get(f"clean{i:03d}") == docs[i], report["removed"].get(f"train/clean{i:03d}")
    # every other clean document passes byte for byte
    for i, text in enumerate(docs):
        if i not in (5, 7):
            assert kept.get(f"clean{i:03d}") == text, report["removed"].get(f"train/clean{i:03d}")
    # validation: its copy of a train document is removed (no leakage); the rest passes
    val = _read(tmp_path / "out", "validation")
    assert "val_leak" not in val and len(val) == 20
    assert report["splits"]["train"]["input"] == 309
    md = (tmp_path / "out" / "curation_report.md").read_text()
    assert "| train | 309 |" in md and "planted_german" in md
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == len(kept) and manifest["sources"][0]["licence"] == "CC0"


def test_clean_corpus_passes_entirely(tmp_path: Path) -> None:
    docs = clean_docs(120, seed=3)
    in_dir = tmp_path / "in"
    shards = write_shards(({"__key__": f"d{i}", "txt": t} for i, t in enumerate(docs)), in_dir, "train")
    write_manifest(in_dir, kind="text", splits={"train": shards}, sources=[])
    report = curate_dataset(in_dir, tmp_path / "out")
    assert report["splits"]["train"]["kept"] == 120
    assert _read(tmp_path / "out", "train") == {f"d{i}": t for i, t in enumerate(docs)}


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[curate]\nquality_factor = 4.0\nnot_a_key = 1\n")
    with pytest.raises(ValueError, match="not_a_key"):
        CurationConfig.from_toml(path)
    path.write_text("[curate]\nquality_factor = 4.0\n")
    assert CurationConfig.from_toml(path).quality_factor == 4.0


# ------------------------------------------------------------------------------- unit checks

def test_minhash_finds_near_duplicates_not_different_texts() -> None:
    docs = clean_docs(3, seed=4)
    index = NearDuplicateIndex()
    assert index.add("a", docs[0]) is None and index.add("b", docs[1]) is None
    changed = docs[0].replace("the", "a", 1)
    assert index.add("c", changed) == "a"


def test_repeated_lines_are_counted_after_normalisation() -> None:
    names = "ann bob cy dee eve fay gus hal".split()
    texts = [f"story of {name}\nSubscribe NOW, {i % 3} times!" for i, name in enumerate(names)]
    banned = repeated_lines(texts, max_repeats=6)  # digits → 0: the line occurs 8 times
    assert banned == {"subscribe now 0 times"}
    assert remove_lines(texts[0], banned) == ("story of ann", 1)


@pytest.mark.parametrize("text,kind", [
    ("mail bob@mail.example.org now", "email"), ("call 020 7946 0958 today", "phone"),
    ("pay with 5500-0000-0000-0004 please", "card"), ("host 10.0.0.255 is up", "ip"),
    ("host fe80::1ff:fe23:4567:890a is up", "ip"),
])
def test_pii_is_replaced(text: str, kind: str) -> None:
    scrubbed, counts = scrub_pii(text)
    assert counts == {kind: 1} and scrubbed != text


@pytest.mark.parametrize("text", [
    "In 1812 the 300 ships sailed 4,000 miles; chapter 12.3.", "version 1.2.3.4.5 and 999.1.1.1",
    "card 4111 1111 1111 1112 fails Luhn", "ratio 3:2 at 10:30:00, C++::std", "years 1850-1920",
])
def test_pii_leaves_ordinary_numbers(text: str) -> None:
    assert scrub_pii(text) == (text, {})


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_duplicated_ngram_fraction() -> None:
    assert duplicated_ngram_fraction(words("a b c d e f g h i j"), 5) == 0.0
    assert duplicated_ngram_fraction(words("a b c d e a b c d e"), 5) == 1.0


def test_kl_is_larger_for_off_distribution_text() -> None:
    model = UnigramModel.fit(clean_docs(50))
    assert model.kl_divergence(words(PLANTED["gibberish"])) > 2 * model.kl_divergence(words(clean_docs(1, 8)[0]))


def test_language_and_quality_models() -> None:
    langs = identify_batch([clean_docs(1)[0], PLANTED["german"]])
    assert [lang for lang, _ in langs] == ["en", "de"]
    lm = CharNgramLM.fit(clean_docs(100))
    assert lm.perplexity(PLANTED["gibberish"]) > 3 * lm.perplexity(clean_docs(1, seed=11)[0])
