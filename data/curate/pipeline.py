"""`herd data curate`: the Llama 3 §3.1 curation pipeline over a text shard folder.

Stages, in order (a document leaves at the first filter it fails; the report names it):
exact dedup → MinHash near-dedup → ccNet line dedup → PII scrubbing (rewrites, never drops) →
length/symbol ratios → duplicated n-grams → dirty words → language ID → token-distribution KL
outliers → character n-gram perplexity (CCNet-style quality). Dedup indexes span the splits in
the order train, validation, test, so held-out splits lose their copies of train documents.
Corpus statistics (KL reference, perplexity model, medians) come from the surviving train
documents. Thresholds are `CurationConfig` fields; the paper publishes none, ours were set on
herd's real corpus (see docs in each module). Everything is held in memory: fine for the few
million words herd fetches, not for web scale.
"""

from __future__ import annotations

import json
import statistics
import time
import tomllib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from data.curate import dedup, heuristics, language, pii, quality
from data.shards import ShardReader, decode_text, read_manifest, split_shards, write_manifest, write_shards

__all__ = ["CurationConfig", "FILTERS", "curate_documents", "curate_dataset"]

FILTERS = ("exact_dup", "near_dup", "line_dedup", "length_symbols", "repetition", "dirty_words", "language",
           "kl_outlier", "quality")
SPLIT_ORDER = ("train", "validation", "test")


@dataclass(kw_only=True)
class CurationConfig:
    shingle: int = dedup.SHINGLE
    """Word n-gram size of MinHash shingles."""
    num_perm: int = dedup.NUM_PERM
    """MinHash permutations (= bands × rows)."""
    bands: int = dedup.BANDS
    """LSH bands."""
    rows: int = dedup.ROWS
    """Rows per LSH band."""
    near_dup_threshold: float = dedup.THRESHOLD
    """Estimated Jaccard at or above which a document is a near-duplicate of an earlier one."""
    line_max_repeats: int = 6
    """A normalised line seen more than this many times in a bucket is removed (paper: 6)."""
    line_bucket: int = 30_000
    """Documents per line-dedup bucket (paper: 30M)."""
    min_words: int = 3
    """Fewer whitespace-separated words: dropped."""
    max_mean_word_length: float = 12.0
    """Longer mean word length (URLs, hashes, run-together text): dropped."""
    min_alpha_word_fraction: float = 0.7
    """Smaller share of words containing a letter (code, tables, ASCII art): dropped."""
    max_non_alnum_fraction: float = 0.35
    """Larger share of non-space characters that are not letters or digits: dropped."""
    max_symbol_word_ratio: float = 0.2
    """More '#', '...' or '…' per word: dropped."""
    dup_ngram: int = 5
    """n of the duplicated n-gram coverage."""
    max_dup_ngram_fraction: float = 0.4
    """Larger share of characters inside repeated n-grams: dropped (judged from `dup_min_words`)."""
    dup_min_words: int = 50
    """Documents shorter than this are not judged for repetition."""
    max_dirty_words: int = 3
    """At least this many dirty words …"""
    max_dirty_fraction: float = 0.01
    """… making up more than this share of the words: dropped."""
    language: str = "en"
    """Language to keep."""
    lang_min_chars: int = 100
    """Shorter documents are not judged by language ID (it is unreliable on them)."""
    lang_min_prob: float = 0.9
    """Dropped when another language is predicted with at least this probability."""
    kl_min_words: int = 50
    """Documents shorter than this are not judged by KL divergence."""
    kl_mad: float = 8.0
    """Dropped when KL > median + kl_mad × MAD of the train documents' KL."""
    quality_factor: float = 3.0
    """Dropped when character perplexity > quality_factor × the train median."""
    quality_min_words: int = 10
    """Documents shorter than this are not judged by perplexity."""
    seed: int = 0
    """Seed of the MinHash permutations and of the perplexity model's training sample."""
    examples: int = 3
    """Examples per filter in the report."""

    @classmethod
    def from_toml(cls, path: Path) -> "CurationConfig":
        data = tomllib.loads(Path(path).read_text())
        data = data.get("curate", data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown curation key {unknown[0]!r}")
        return cls(**data)


@dataclass
class _Doc:
    split: str
    key: str
    text: str
    meta: dict | None
    removed_by: str | None = None
    pii: Counter | None = None


def _remove(doc: _Doc, reason: str, examples: dict, n: int, detail: str = "") -> None:
    doc.removed_by = reason
    if len(examples[reason]) < n:
        examples[reason].append({"split": doc.split, "key": doc.key, "detail": detail,
                                 "text": doc.text[:200]})


def _dedup(docs: list[_Doc], config: CurationConfig, examples: dict) -> None:
    seen: dict[str, str] = {}
    index = dedup.NearDuplicateIndex(num_perm=config.num_perm, bands=config.bands, rows=config.rows,
                                     threshold=config.near_dup_threshold, shingle=config.shingle, seed=config.seed)
    for doc in docs:
        key = dedup.exact_key(doc.text)
        if key in seen:
            _remove(doc, "exact_dup", examples, config.examples, f"same as {seen[key]}")
            continue
        seen[key] = doc.key
        twin = index.add(f"{doc.split}/{doc.key}", doc.text)
        if twin is not None:
            _remove(doc, "near_dup", examples, config.examples, f"near-duplicate of {twin}")


def _line_dedup(docs: list[_Doc], config: CurationConfig, examples: dict, stats: dict) -> None:
    for split in SPLIT_ORDER:
        live = [d for d in docs if d.split == split and d.removed_by is None]
        for bucket in dedup.split_buckets([d.key for d in live], config.line_bucket):
            members = [live[i] for i in bucket]
            banned = dedup.repeated_lines((d.text for d in members), config.line_max_repeats)
            for doc in members:
                text, removed = dedup.remove_lines(doc.text, banned)
                if removed:
                    stats["lines_removed"] += removed
                    stats["docs_with_lines_removed"] += 1
                    if len(examples["line_dedup_lines"]) < config.examples:
                        gone = [ln for ln in doc.text.split("\n") if ln.strip() and dedup.normalise_line(ln) in banned]
                        examples["line_dedup_lines"].append({"split": doc.split, "key": doc.key, "text": gone[0][:200]})
                    doc.text = text
                    if not text.strip():
                        _remove(doc, "line_dedup", examples, config.examples, "nothing left")


def _heuristics(doc: _Doc, config: CurationConfig, examples: dict) -> None:
    shape = heuristics.shape_stats(doc.text)
    checks = (
        (shape.words < config.min_words, f"{shape.words} words"),
        (shape.mean_word_length > config.max_mean_word_length, f"mean word length {shape.mean_word_length:.1f}"),
        (shape.alpha_word_fraction < config.min_alpha_word_fraction, f"alpha words {shape.alpha_word_fraction:.2f}"),
        (shape.non_alnum_fraction > config.max_non_alnum_fraction, f"non-alnum {shape.non_alnum_fraction:.2f}"),
        (shape.symbol_word_ratio > config.max_symbol_word_ratio, f"symbols/word {shape.symbol_word_ratio:.2f}"),
    )
    for failed, detail in checks:
        if failed:
            return _remove(doc, "length_symbols", examples, config.examples, detail)
    tokens = heuristics.words(doc.text)
    if len(tokens) >= config.dup_min_words:
        frac = heuristics.duplicated_ngram_fraction(tokens, config.dup_ngram)
        if frac > config.max_dup_ngram_fraction:
            return _remove(doc, "repetition", examples, config.examples, f"dup {config.dup_ngram}-gram chars {frac:.2f}")
    dirty = heuristics.dirty_word_count(tokens)
    if dirty >= config.max_dirty_words and dirty / max(len(tokens), 1) > config.max_dirty_fraction:
        _remove(doc, "dirty_words", examples, config.examples, f"{dirty} dirty words")


def _language(docs: list[_Doc], config: CurationConfig, examples: dict) -> None:
    judged = [d for d in docs if d.removed_by is None and len(d.text) >= config.lang_min_chars]
    for doc, (lang, prob) in zip(judged, language.identify_batch([d.text for d in judged])):
        if lang != config.language and prob >= config.lang_min_prob:
            _remove(doc, "language", examples, config.examples, f"{lang} p={prob:.2f}")


def _model_filters(docs: list[_Doc], config: CurationConfig, examples: dict, stats: dict) -> None:
    train = [d.text for d in docs if d.removed_by is None and d.split == "train"]
    if not train:
        return
    unigrams = heuristics.UnigramModel.fit(train)
    tokens = {id(d): heuristics.words(d.text) for d in docs if d.removed_by is None}
    ref = [unigrams.kl_divergence(tokens[id(d)]) for d in docs
           if d.removed_by is None and d.split == "train" and len(tokens[id(d)]) >= config.kl_min_words]
    if len(ref) >= 5:
        med = statistics.median(ref)
        mad = statistics.median(abs(k - med) for k in ref)
        limit = med + config.kl_mad * max(mad, 0.05 * med)
        stats["kl_limit"] = round(limit, 3)
        for doc in docs:
            if doc.removed_by is None and len(tokens[id(doc)]) >= config.kl_min_words:
                kl = unigrams.kl_divergence(tokens[id(doc)])
                if kl > limit:
                    _remove(doc, "kl_outlier", examples, config.examples, f"KL {kl:.2f} > {limit:.2f}")
    lm = quality.CharNgramLM.fit([d.text for d in docs if d.removed_by is None and d.split == "train"],
                                 seed=config.seed)
    judged = [d for d in docs if d.removed_by is None and len(tokens[id(d)]) >= config.quality_min_words]
    scores = {id(d): lm.perplexity(d.text) for d in judged}
    ref = [scores[id(d)] for d in judged if d.split == "train"]
    if ref:
        limit = config.quality_factor * statistics.median(ref)
        stats["perplexity_median"] = round(statistics.median(ref), 3)
        stats["perplexity_limit"] = round(limit, 3)
        for doc in judged:
            if scores[id(doc)] > limit:
                _remove(doc, "quality", examples, config.examples, f"char perplexity {scores[id(doc)]:.1f} > {limit:.1f}")


def curate_documents(docs: list[_Doc], config: CurationConfig) -> dict:
    """Run every stage over `docs` (in place: `removed_by`, rewritten `text`, `pii`); return the report."""
    examples: dict[str, list] = defaultdict(list)
    stats: Counter = Counter()
    timings = {}
    start = time.perf_counter()
    _dedup(docs, config, examples)
    timings["dedup"] = time.perf_counter() - start
    _line_dedup(docs, config, examples, stats)
    timings["line_dedup"] = time.perf_counter() - start - sum(timings.values())
    for doc in docs:
        if doc.removed_by is None:
            doc.text, doc.pii = pii.scrub_pii(doc.text)
            if doc.pii:
                stats["docs_with_pii"] += 1
                for kind, n in doc.pii.items():
                    stats[f"pii_{kind}"] += n
                if len(examples["pii"]) < config.examples:
                    examples["pii"].append({"split": doc.split, "key": doc.key, "detail": dict(doc.pii),
                                            "text": doc.text[:200]})
            _heuristics(doc, config, examples)
    timings["pii_heuristics"] = time.perf_counter() - start - sum(timings.values())
    _language(docs, config, examples)
    timings["language"] = time.perf_counter() - start - sum(timings.values())
    _model_filters(docs, config, examples, stats)
    timings["kl_quality"] = time.perf_counter() - start - sum(timings.values())
    splits = {}
    for split in dict.fromkeys(d.split for d in docs):
        members = [d for d in docs if d.split == split]
        removed = Counter(d.removed_by for d in members if d.removed_by)
        splits[split] = {"input": len(members), "kept": len(members) - sum(removed.values()),
                         "removed": {f: removed.get(f, 0) for f in FILTERS}}
    removed = {f"{d.split}/{d.key}": d.removed_by for d in docs if d.removed_by}
    return {"config": asdict(config), "splits": splits, "stats": dict(stats), "examples": dict(examples),
            "removed": removed,
            "seconds": {k: round(v, 2) for k, v in timings.items()}}


def _read(in_dir: Path) -> tuple[list[_Doc], dict, Counter]:
    manifest = read_manifest(in_dir)
    docs, skipped = [], Counter()
    for split in sorted(manifest["splits"], key=lambda s: (SPLIT_ORDER + (s,)).index(s)):
        if not manifest["splits"][split]["shards"]:
            continue
        reader = ShardReader(split_shards(in_dir, split), decode=decode_text, required=("txt",), epochs=1,
                             shuffle=False)
        docs.extend(_Doc(split, s["__key__"], s["txt"], s.get("json")) for s in reader)
        skipped.update(reader.skipped)
    return docs, manifest, skipped


def curate_dataset(in_dir: Path, out_dir: Path, config: CurationConfig | None = None) -> dict:
    """Curate the text shards in `in_dir` into `out_dir` (shards, manifest, curation_report.{json,md})."""
    config = config or CurationConfig()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if in_dir.resolve() == out_dir.resolve():
        raise ValueError(f"curate writes a new folder: --out must differ from {in_dir}")
    docs, manifest, skipped = _read(in_dir)
    report = curate_documents(docs, config)
    report["unreadable_samples"] = dict(skipped)
    shards = {}
    for split in report["splits"]:
        kept = [d for d in docs if d.split == split and d.removed_by is None]
        samples = ({"__key__": d.key, "txt": d.text,
                    **({"json": {**(d.meta or {}), **({"pii": dict(d.pii)} if d.pii else {})}}
                       if d.meta or d.pii else {})} for d in kept)
        shards[split] = write_shards(samples, out_dir, split, max_size=4 << 20)
    write_manifest(out_dir, kind=manifest.get("kind", "text"), splits=shards, sources=manifest.get("sources", []),
                   extra={"curated_from": str(in_dir), "curation": {"config": report["config"],
                                                                   "splits": report["splits"]}})
    (out_dir / "curation_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    from data.curate.report import markdown_report

    (out_dir / "curation_report.md").write_text(markdown_report(report))
    return report
