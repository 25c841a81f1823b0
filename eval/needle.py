"""`herd eval needle`: needle-in-a-haystack retrieval (llama3-spec §1.4).

A random fact ("The secret number of Anna is 4821.") is hidden at a relative depth of a context of
filler prose (long documents of the text shards) cut to a target token length; the prompt ends
with the question's cue ("The secret number of Anna is") and the model continues greedily. A trial
is correct when the continuation starts with the number. Accuracy per (length, depth) →
`scores.json`, one JSON line per trial → `trials.jsonl`, and a heat map → `needle.png`.

    herd eval needle --checkpoint runs/x/text_longctx --shards runs/demo/data/text --out runs/x/needle \
        --lengths 256,1024,4096 --depths 0,0.25,0.5,0.75,1 --trials 4
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ANSWER_TOKENS = 6
"""Tokens generated after the cue; a trial of length L is L tokens in all, prompt and answer."""
NAMES = ("Anna", "Elliot", "Harriet", "Ishmael", "Marianne", "Queequeg", "Emma", "Darcy")


def register(tasks: argparse._SubParsersAction) -> None:
    from eval.arguments import add_source_arguments

    p = tasks.add_parser("needle", help="needle-in-a-haystack retrieval by context length and depth")
    add_source_arguments(p, checkpoint="text", shards="text shards whose long documents are the filler",
                         manifest=None, split="validation", unit="trials per cell")
    p.add_argument("--lengths", default="256,1024,4096", help="context lengths in tokens, comma-separated")
    p.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="needle depths in [0, 1], comma-separated")
    p.add_argument("--trials", type=int, default=4, help="trials per (length, depth) cell")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def haystack_tokens(shards: list[Path], tokenizer, need: int, min_chars: int = 2000) -> list[int]:
    """At least `need` tokens of filler: long documents, concatenated."""
    from data.shards import ShardReader, decode_text

    tokens: list[int] = []
    for sample in ShardReader(shards, shuffle=False, epochs=1, decode=decode_text, required=("txt",)):
        if len(sample["txt"]) >= min_chars:
            tokens += tokenizer.encode(sample["txt"] + "\n\n")
            if len(tokens) >= need:
                return tokens
    if len(tokens) < need:
        raise ValueError(f"the shards hold only {len(tokens)} filler tokens; {need} needed")
    return tokens


def make_trial(filler: list[int], tokenizer, length: int, depth: float, rng: random.Random) -> dict:
    """Prompt ids of exactly-bounded length with the needle at `depth`, and the expected answer."""
    name, number = rng.choice(NAMES), str(rng.randrange(1000, 10000))
    needle = tokenizer.encode(f" The secret number of {name} is {number}. ")
    question = tokenizer.encode(f"\n\nThe secret number of {name} is")
    room = length - len(needle) - len(question) - 1 - ANSWER_TOKENS  # 1 for BOS
    if room < 0:
        raise ValueError(f"length {length} is too short for the needle and the question")
    offset = rng.randrange(0, max(1, len(filler) - room))
    context = filler[offset:offset + room]
    at = round(depth * len(context))
    ids = [tokenizer.bos_id] + context[:at] + needle + context[at:] + question
    return {"ids": ids, "answer": number, "name": name}


def run(args: argparse.Namespace) -> int:
    import torch

    from data.shards import split_shards
    from text.generate import generate
    from text.tokenizer import load_tokenizer
    from train.checkpoint import load_text_model, resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    model, tokenizer = load_text_model(ckpt), load_tokenizer(ckpt)
    lengths = [int(v) for v in args.lengths.split(",")]
    depths = [float(v) for v in args.depths.split(",")]
    if max(lengths) > model.config.max_seq_len:
        raise ValueError(f"length {max(lengths)} exceeds the model's max_seq_len {model.config.max_seq_len}")
    trials = args.limit or args.trials
    filler = haystack_tokens(split_shards(args.shards, args.split), tokenizer, 2 * max(lengths))
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cells: dict[str, float] = {}
    with (args.out / "trials.jsonl").open("w") as log, torch.inference_mode():
        for length in lengths:
            for depth in depths:
                hits = 0
                for _ in range(trials):
                    t = make_trial(filler, tokenizer, length, depth, rng)
                    out = generate(model, [t["ids"]], max_new_tokens=ANSWER_TOKENS)[0]
                    text = tokenizer.decode(out, skip_special=True).strip()
                    correct = text.startswith(t["answer"])
                    hits += correct
                    log.write(json.dumps({"length": length, "depth": depth, "answer": t["answer"],
                                          "output": text, "correct": correct}) + "\n")
                cells[f"{length}@{depth}"] = hits / trials
                print(f"herd eval needle: length {length:>6} depth {depth:.2f}: {hits}/{trials}", flush=True)
    scores = {"checkpoint": str(ckpt), "trials_per_cell": trials, "lengths": lengths, "depths": depths,
              "accuracy": cells, "mean_accuracy": sum(cells.values()) / len(cells)}
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2))
    heat_map(cells, lengths, depths, args.out / "needle.png")
    print(f"herd eval needle: mean accuracy {scores['mean_accuracy']:.3f} → {args.out}")
    return 0


def heat_map(cells: dict[str, float], lengths: list[int], depths: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([[cells[f"{n}@{d}"] for n in lengths] for d in depths])
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2, 0.6 * len(depths) + 1.5))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set(xlabel="context length (tokens)", ylabel="needle depth", title="needle retrieval accuracy")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["register", "run", "make_trial", "haystack_tokens", "heat_map"]
