"""`herd data build chat`: instruction dialogues (SFT) and preference pairs (DPO) made from the
text corpus, as webdataset shards (sample key `json`) with one manifest.

Tasks, each a user turn and the reference assistant answer (llama3-spec §1.6, scaled down):
- `define`   — "What does X mean?" → the WordNet gloss of X;
- `fortune`  — "Tell me a fortune." → one fortune;
- `continue` — "Continue this passage: …" → the next sentence of an Austen / Moby-Dick chapter;
- `repeat`   — "Repeat after me: S" → S verbatim (Harvard sentences and short novel sentences);
- `copy`     — "Repeat after me: w1 … wk" (or the speech stage's "Repeat after me in English: …") →
  the same k random words of the split's sentences: a string no language-model prior predicts, so
  only attending back to the prompt lowers the loss (preset `tiny-copy`).
  The copy tasks matter later: the speech adapter's outputs enter the frozen LM as prompt
  embeddings, and an LM that cannot copy from its prompt cannot transcribe them (the tiny LM
  pretrained on 1.6M tokens has no induction heads; the SFT mix must create them).

Preference pairs take the same prompts with chosen = the reference answer and rejected = a
corrupted one: another word's gloss, a copy with dropped/swapped words, a sentence from elsewhere,
an answer cut short and repeated (the tail repetition DPO is meant to remove).

Splits follow `data.build_text.assign_split` document by document, so nothing from the held-out
novel (validation) or the test chapters reaches SFT/DPO training. Splits in the one manifest:
`train`, `validation`, `test` (SFT dialogues) and `dpo_train`, `dpo_validation`, `dpo_test`.

    sample json (SFT): {"messages": [{"role": "user", …}, {"role": "assistant", …}], "task": "define"}
    sample json (DPO): {"prompt": [{"role": "user", …}], "chosen": "…", "rejected": "…", "task": "define"}
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

__all__ = ["build", "make_dialogues", "make_pairs", "PRESETS"]

PRESETS = {
    "tiny": {"define": 2500, "fortune": 600, "continue": 1500, "repeat": 2500, "dpo_fraction": 0.5},
    # tiny + random-word copies: 800 SFT steps on it (lr 2e-3) still left the tiny LM at 0 % exact repeats
    # and copy_accuracy 0.095 (first pass 0.077): SFT cannot add the copying a pretrained LM lacks
    "tiny-copy": {"define": 2500, "fortune": 600, "continue": 1500, "repeat": 4000, "copy": 4000,
                  "dpo_fraction": 0.5},
    "full": {"define": 60000, "fortune": 8000, "continue": 30000, "repeat": 30000, "dpo_fraction": 0.5},
}
"""Dialogues per task across all splits (fewer when the corpus has fewer), and the share of them
that also become preference pairs."""

SPLITS = ("train", "validation", "test")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_DEFINE_PROMPTS = ("What does {w} mean?", "What does the word \"{w}\" mean?", "Define {w}.", "What is meant by {w}?")
_FORTUNE_PROMPTS = ("Tell me a fortune.", "Give me a fortune cookie saying.", "Say something wise.")
_COPY_PROMPTS = ("Repeat after me:", "Repeat after me in English:")
_COPY_WORDS = (3, 14)
"""Words per `copy` dialogue (inclusive range): Harvard sentences have 5–12."""


def _sentences(text: str) -> list[str]:
    return [s.strip().replace("\n", " ") for s in _SENTENCE.split(text) if s.strip()]


def _define_items(doc) -> Iterator[tuple[str, str]]:
    for line in doc.text.splitlines():
        words, _, rest = line.partition(": ")
        gloss = rest.split(";")[0].strip().strip('"')
        word = words.split(",")[0].strip()
        if word and gloss and len(gloss) > 8:
            yield word, gloss


def make_dialogues(docs_by_split: dict[str, list], seed: int, sizes: dict[str, int]) -> dict[str, list[dict]]:
    """SFT dialogues per split: {"messages", "task", "answer", "prompt"} (answer/prompt kept for DPO)."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {}
    for split, docs in docs_by_split.items():
        share = {"train": 0.9, "validation": 0.05, "test": 0.05}[split]
        items: list[dict] = []
        defines = [(w, g) for d in docs if d.source == "wordnet" for w, g in _define_items(d)]
        rng.shuffle(defines)
        for w, g in defines[: int(sizes["define"] * share) or 1]:
            items.append(_dialogue("define", rng.choice(_DEFINE_PROMPTS).format(w=w), f"{w.capitalize()} means {g}."))
        fortunes = [d.text.strip() for d in docs if d.source == "fortunes" and 10 < len(d.text) < 300]
        rng.shuffle(fortunes)
        for f in fortunes[: int(sizes["fortune"] * share) or 1]:
            items.append(_dialogue("fortune", rng.choice(_FORTUNE_PROMPTS), f))
        prose = [_sentences(d.text) for d in docs if d.source in ("austen", "mobydick")]
        pairs = [(s[i], s[i + 1]) for s in prose for i in range(len(s) - 1)
                 if 20 < len(s[i]) < 240 and 10 < len(s[i + 1]) < 240]
        rng.shuffle(pairs)
        for a, b in pairs[: int(sizes["continue"] * share) or 1]:
            items.append(_dialogue("continue", f"Continue this passage: {a}", b))
        short = [s for d in docs if d.source in ("harvard", "austen", "mobydick")
                 for s in (d.text.splitlines() if d.source == "harvard" else _sentences(d.text))
                 if 15 < len(s.strip()) < 120]
        rng.shuffle(short)
        for s in short[: int(sizes["repeat"] * share) or 1]:
            s = s.strip()
            items.append(_dialogue("repeat", f"Repeat after me: {s}", s))
        words = [w for s in short for w in s.split()]
        for _ in range(int(sizes.get("copy", 0) * share) if words else 0):
            s = " ".join(rng.choice(words) for _ in range(rng.randint(*_COPY_WORDS)))
            items.append(_dialogue("copy", f"{rng.choice(_COPY_PROMPTS)} {s}", s))
        rng.shuffle(items)
        out[split] = items
    return out


def _dialogue(task: str, prompt: str, answer: str) -> dict:
    return {"task": task, "prompt": prompt, "answer": answer,
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def corrupt(item: dict, pool: list[dict], rng: random.Random) -> str:
    """A plausible but worse answer to item's prompt."""
    answer, task = item["answer"], item["task"]
    words = answer.split()
    if task in ("repeat", "copy") and len(words) > 3:
        i = rng.randrange(len(words) - 1)
        if rng.random() < 0.5:
            words[i], words[i + 1] = words[i + 1], words[i]
        else:
            del words[i]
        return " ".join(words)
    same = [p for p in pool if p["task"] == task and p["answer"] != answer]
    if same and rng.random() < 0.6:
        other = rng.choice(same)["answer"]
        if task == "define":  # keep the word, wrong gloss
            head, _, _ = answer.partition(" means ")
            return f"{head} means {other.partition(' means ')[2] or other}"
        return other
    cut = words[: max(1, len(words) // 2)]
    return " ".join(cut + cut[-3:] * 3)  # cut short with tail repetition


def make_pairs(dialogues: dict[str, list[dict]], seed: int, fraction: float) -> dict[str, list[dict]]:
    rng = random.Random(seed + 1)
    out = {}
    for split, items in dialogues.items():
        chosen = items[: max(1, int(len(items) * fraction))]
        pairs = []
        for item in chosen:
            rejected = corrupt(item, items, rng)
            if rejected.strip() and rejected != item["answer"]:
                pairs.append({"task": item["task"], "prompt": [{"role": "user", "content": item["prompt"]}],
                              "chosen": item["answer"], "rejected": rejected})
        out[split] = pairs
    return out


def build(out_dir: Path, *, preset: str, seed: int, cache: Path) -> dict:
    """Build SFT and DPO shards into `out_dir`; return per-split counts by task."""
    from data.build_text import _check_cache, assign_split, collect_documents
    from data.shards import write_manifest, write_shards

    if preset not in PRESETS:
        raise ValueError(f"unknown chat preset {preset!r} (choose from {', '.join(PRESETS)})")
    start = time.perf_counter()
    out_dir, cache = Path(out_dir), Path(cache)
    sources = _check_cache(cache)
    docs, _ = collect_documents(cache, preset="full")
    by_split: dict[str, list] = defaultdict(list)
    for doc in docs:
        by_split[assign_split(doc, seed)].append(doc)
    sizes = PRESETS[preset]
    dialogues = make_dialogues({s: by_split[s] for s in SPLITS}, seed, sizes)
    pairs = make_pairs(dialogues, seed, sizes["dpo_fraction"])
    shards, stats = {}, {}
    for split in SPLITS:
        sft = ({"__key__": f"sft-{split}-{i:07d}", "json": {"messages": d["messages"], "task": d["task"]}}
               for i, d in enumerate(dialogues[split]))
        shards[split] = write_shards(sft, out_dir, split, max_size=4 << 20)
        dpo = ({"__key__": f"dpo-{split}-{i:07d}", "json": p} for i, p in enumerate(pairs[split]))
        shards[f"dpo_{split}"] = write_shards(dpo, out_dir, f"dpo_{split}", max_size=4 << 20)
        stats[split] = dict(sorted(Counter(d["task"] for d in dialogues[split]).items()))
        stats[f"dpo_{split}"] = dict(sorted(Counter(p["task"] for p in pairs[split]).items()))
    write_manifest(out_dir, kind="chat", splits=shards, sources=sources,
                   extra={"preset": preset, "seed": seed, "stats": stats,
                          "split_rule": "each dialogue comes from a document of the same split in data.build_text"})
    return {"kind": "chat", "preset": preset, "seed": seed, "splits": stats,
            "seconds": round(time.perf_counter() - start, 2)}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Build SFT/DPO chat shards from the text corpus.")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--preset", default="tiny", choices=tuple(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "herd")
    args = parser.parse_args()
    print(json.dumps(build(args.out, preset=args.preset, seed=args.seed, cache=args.cache), indent=2))
