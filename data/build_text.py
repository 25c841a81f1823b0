"""`herd data build text`: the real English corpora as train / validation / test text shards.

One document per sample (`txt`, plus `json` with source, title, group): Austen and Moby-Dick
chapters, Harvard lists, fortunes, runs of WordNet synsets (`data.text_sources`).

Splits never leak: exact duplicates (normalised text) and near-duplicates (MinHash LSH, Jaccard
≥ 0.8 on word 5-grams) are removed across the whole corpus first, and every *group* (a novel, a Moby-Dick chapter, a fortune, a WordNet run) lands in one
split. Validation holds out the whole of *Persuasion*; test holds out Moby-Dick from chapter 121 to
the epilogue; each also takes a hash-chosen 5 % of the fortune and WordNet groups. Harvard lists
follow the speech prompts' split (`data.text_sources.harvard_list_split`): a sentence the
recogniser is tested on is never text the LM trained on. The hash is keyed by the seed, and the
train order is shuffled with it, so a build is a pure function of (cache, preset, seed).

`tiny` keeps every novel, fortune and Harvard list and one WordNet run in three (about two thirds
of the words); `full` keeps everything.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from data.curate.dedup import NearDuplicateIndex
from data.debian import read_cache_manifest
from data.shards import write_manifest, write_shards
from data.sources import SOURCES
from data.text_sources import Doc, austen, fortunes, harvard, harvard_list_split, moby_dick, wordnet

__all__ = ["build", "collect_documents", "assign_split", "SPLITS"]

SPLITS = ("train", "validation", "test")
VALIDATION_GROUPS = {"austen-persuasion"}
TEST_MOBY_FROM = 121  # Moby-Dick chapters >= this (and the epilogue) are test
HASHED_SOURCES = {"fortunes", "wordnet"}
HASHED_FRACTION = 0.05  # of the hashed sources' groups, to each of validation and test
PRESETS = {"tiny": {"wordnet_keep": 3, "shard_bytes": 1 << 20}, "full": {"wordnet_keep": 1, "shard_bytes": 4 << 20}}


def _unit(seed: int, text: str) -> float:
    """A uniform number in [0, 1) from (seed, text), stable across processes and machines."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def assign_split(doc: Doc, seed: int) -> str:
    """The split of a document, decided by its group alone."""
    if doc.group in VALIDATION_GROUPS:
        return "validation"
    if doc.source == "mobydick":
        number = int(doc.group.rsplit("-", 1)[1])
        return "test" if number >= TEST_MOBY_FROM else "train"
    if doc.source == "harvard":  # the speech prompts' split: the LM never trains on a test utterance's text
        return harvard_list_split(int(doc.group.rsplit("-", 1)[1]))
    if doc.source in HASHED_SOURCES:
        u = _unit(seed, doc.group)
        if u < HASHED_FRACTION:
            return "test"
        if u < 2 * HASHED_FRACTION:
            return "validation"
    return "train"


def collect_documents(cache: Path, *, preset: str = "full") -> tuple[list[Doc], int]:
    """Every document of the corpus with exact and near duplicates (MinHash, `data.curate.dedup`)
    removed, the first by key kept; also the number of duplicates dropped."""
    if preset not in PRESETS:
        raise ValueError(f"unknown text preset {preset!r} (choose from {', '.join(PRESETS)})")
    keep = PRESETS[preset]["wordnet_keep"]
    docs = austen(cache) + moby_dick(cache) + harvard(cache) + fortunes(cache)
    docs += [d for i, d in enumerate(wordnet(cache)) if i % keep == 0]
    seen: set[str] = set()
    near = NearDuplicateIndex()
    unique = []
    for doc in sorted(docs, key=lambda d: d.key):
        norm = normalise(doc.text)
        if norm and norm not in seen and near.add(doc.key, doc.text) is None:
            seen.add(norm)
            unique.append(doc)
    return unique, len(docs) - len(unique)


def _check_cache(cache: Path) -> list[dict]:
    manifest = read_cache_manifest(cache)["debian"]
    sources = []
    for source in SOURCES["text"]:
        record = manifest.get(source.name)
        if record is None or not (cache / "debian" / source.name / ".complete").is_file():
            raise FileNotFoundError(f"{source.name} is not in the cache {cache}: run `herd data fetch --only text`")
        sources.append({"name": source.name, "registry": source.registry, "version": record["version"],
                        "sha256": record["sha256"], "licence": source.licence, "what": source.what})
    return sources


def build(out_dir: Path, *, preset: str, seed: int, cache: Path) -> dict:
    """Build text shards into `out_dir`; return per-split document/word counts and build time."""
    start = time.perf_counter()
    out_dir, cache = Path(out_dir), Path(cache)
    sources = _check_cache(cache)
    docs, duplicates = collect_documents(cache, preset=preset)
    by_split: dict[str, list[Doc]] = defaultdict(list)
    for doc in docs:
        by_split[assign_split(doc, seed)].append(doc)
    random.Random(seed).shuffle(by_split["train"])  # mix sources across train shards
    stats, shards = {}, {}
    for split in SPLITS:
        split_docs = by_split[split]
        samples = ({"__key__": d.key, "txt": d.text, "json": {"source": d.source, "title": d.title, "group": d.group}}
                   for d in split_docs)
        shards[split] = write_shards(samples, out_dir, split, max_size=PRESETS[preset]["shard_bytes"])
        stats[split] = {"documents": len(split_docs), "words": sum(len(d.text.split()) for d in split_docs),
                        "chars": sum(len(d.text) for d in split_docs), "shards": len(shards[split]),
                        "by_source": dict(sorted(Counter(d.source for d in split_docs).items()))}
    seconds = round(time.perf_counter() - start, 2)
    rule = ("validation: Persuasion + 5% of Harvard/fortune/WordNet groups; test: Moby-Dick ch. "
            f"{TEST_MOBY_FROM}-epilogue + 5% of those groups; exact and near duplicates removed corpus-wide first")
    write_manifest(out_dir, kind="text", splits=shards, sources=sources,
                   extra={"preset": preset, "seed": seed, "split_rule": rule, "duplicates_removed": duplicates,
                          "stats": stats})
    return {"kind": "text", "preset": preset, "seed": seed, "splits": stats,
            "duplicates_removed": duplicates, "seconds": seconds}
