"""`herd rs`: rejection sampling (llama3-spec §1.6): sample K responses per prompt from an SFT
checkpoint, score each with a reward, keep the best, and write a new SFT shard set in the format
`data/build_chat.py` writes (sample json {"messages", "task"}, manifest kind "chat"), ready for
the next `text-sft` round.

Scorers are plug-ins with one method, `score(prompt, response, reference, task, finished) -> float`:
`rule` (default: overlap with the reference answer when the dataset has one, minus penalties for
repetition and for never ending the turn — the paper's rule-based cleaning), `lm:CHECKPOINT`
(mean token log-likelihood of the response under a model), or `package.module:Class`.

    herd rs --checkpoint runs/demo/text_sft --shards runs/demo/data/chat --out runs/rs --k 8 --prompts 256
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Protocol


class Scorer(Protocol):
    """A reward: higher is better. `finished` says whether the response ended its turn (a stop
    token) rather than running out of tokens."""

    def score(self, prompt: list[dict], response: str, reference: str | None, task: str | None,
              finished: bool = True) -> float: ...


def _words(text: str) -> list[str]:
    return [w.strip(".,;:!?\"'()").lower() for w in text.split() if w.strip(".,;:!?\"'()")]


def repetition(words: list[str]) -> float:
    """Fraction of the word trigrams that repeat an earlier one (tail repetition → near 1)."""
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


class RuleScorer:
    """Word-level F1 against the reference (if any), − repetition, − 0.2 for an unfinished turn.

    The F1 term makes the reward verifiable on tasks with a known answer (copying, definitions);
    without a reference only the penalties speak."""

    def score(self, prompt: list[dict], response: str, reference: str | None, task: str | None,
              finished: bool = True) -> float:
        words = _words(response)
        value = -repetition(words) - (0.0 if finished else 0.2)
        if reference:
            ref = _words(reference)
            common = sum((Counter(words) & Counter(ref)).values())
            f1 = 2 * common / (len(words) + len(ref)) if words and ref else 0.0
            value += f1
        return value


class LMScorer:
    """Mean log-likelihood per response token under a (reward/reference) checkpoint."""

    def __init__(self, checkpoint: str):
        from text.chat_format import ChatFormat
        from text.tokenizer import load_tokenizer
        from train.checkpoint import load_text_model, resolve_checkpoint

        path = resolve_checkpoint(checkpoint)
        self.model, tokenizer = load_text_model(path), load_tokenizer(path)
        self.chat = ChatFormat(tokenizer)

    def score(self, prompt: list[dict], response: str, reference: str | None, task: str | None,
              finished: bool = True) -> float:
        import torch

        from train.stages.text_common import token_logprobs

        tokens, mask = self.chat.encode_for_training(prompt + [{"role": "assistant", "content": response}])
        ids = torch.tensor(tokens)[None]
        targets = torch.tensor([t if m else -100 for t, m in zip(tokens[1:], mask[1:])])[None]
        with torch.inference_mode():
            logp = token_logprobs(self.model(ids[:, :-1]), targets)
        return float(logp.sum() / max(int((targets != -100).sum()), 1))


def load_scorer(spec: str) -> Scorer:
    if spec == "rule":
        return RuleScorer()
    if spec.startswith("lm:"):
        return LMScorer(spec[3:])
    module, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"scorer {spec!r}: use rule, lm:CHECKPOINT or package.module:Class")
    return getattr(importlib.import_module(module), name)()


def rejection_sample(*, checkpoint: Path, shards: Path, split: str, out: Path, k: int, prompts: int,
                     scorer: Scorer, temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 64,
                     batch_rows: int = 32, seed: int = 0, copy_splits: tuple[str, ...] = ("validation",),
                     log=print) -> dict:
    """Best-of-K responses for the first `prompts` dialogues of `split` → an SFT shard folder."""
    from data.shards import ShardReader, read_manifest, split_shards, write_manifest, write_shards
    from text.chat_format import ChatFormat
    from text.generate import generate
    from text.tokenizer import load_tokenizer
    from train.checkpoint import load_text_model, resolve_checkpoint
    from train.stages.chat_data import decode_json

    started = time.perf_counter()
    ckpt = resolve_checkpoint(checkpoint)
    model, tokenizer = load_text_model(ckpt), load_tokenizer(ckpt)
    chat = ChatFormat(tokenizer)
    reader = ShardReader(split_shards(shards, split), shuffle=False, epochs=1, decode=decode_json, required=("json",))
    items = []
    for sample in reader:
        messages = sample["messages"]
        if messages[-1]["role"] == "assistant":
            items.append({"prompt": messages[:-1], "reference": messages[-1]["content"],
                          "task": sample.get("task")})
        if len(items) >= prompts:
            break
    per_call = max(1, batch_rows // k)
    out.mkdir(parents=True, exist_ok=True)
    kept, all_scores, best_scores = [], [], []
    with (out / "rs.jsonl").open("w") as record:
        for start in range(0, len(items), per_call):
            group = items[start:start + per_call]
            ids = [chat.encode_dialog(it["prompt"], add_generation_prompt=True) for it in group for _ in range(k)]
            outputs = generate(model, ids, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                               stop_tokens=tokenizer.stop_tokens, seed=seed + start)
            for i, it in enumerate(group):
                candidates = []
                for tokens in outputs[i * k:(i + 1) * k]:
                    finished = bool(tokens) and tokens[-1] in tokenizer.stop_tokens
                    text = tokenizer.decode(tokens, skip_special=True).strip()
                    candidates.append((scorer.score(it["prompt"], text, it["reference"], it["task"], finished),
                                       text))
                best = max(candidates, key=lambda c: c[0])
                all_scores += [c[0] for c in candidates]
                best_scores.append(best[0])
                if best[1]:
                    kept.append({"messages": it["prompt"] + [{"role": "assistant", "content": best[1]}],
                                 "task": it["task"]})
                record.write(json.dumps({"prompt": it["prompt"][-1]["content"], "reference": it["reference"],
                                         "best": best[1], "scores": [c[0] for c in candidates]}) + "\n")
            log(f"{min(start + per_call, len(items))}/{len(items)} prompts")
    samples = ({"__key__": f"rs-train-{i:07d}", "json": d} for i, d in enumerate(kept))
    splits = {"train": write_shards(samples, out, "train", max_size=4 << 20)}
    source = read_manifest(shards) if (shards / "manifest.json").is_file() else {"splits": {}, "sources": []}
    for name in copy_splits:  # held-out splits unchanged, so the next SFT round validates on the same data
        if name in source["splits"]:
            for shard in source["splits"][name]["shards"]:
                shutil.copyfile(shards / shard["path"], out / shard["path"])
            splits[name] = source["splits"][name]["shards"]
    summary = {"checkpoint": str(ckpt), "prompts": len(items), "k": k, "kept": len(kept),
               "mean_score_all": sum(all_scores) / max(len(all_scores), 1),
               "mean_score_best": sum(best_scores) / max(len(best_scores), 1),
               "temperature": temperature, "top_p": top_p, "seconds": round(time.perf_counter() - started, 1)}
    write_manifest(out, kind="chat", splits=splits, sources=source.get("sources", []),
                   extra={"rejection_sampling": summary,
                          "stats": {"train": dict(sorted(Counter(d["task"] for d in kept).items()))}})
    return summary


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rs", help="rejection sampling: best of K sampled responses → a new SFT shard set",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="SFT checkpoint, run folder or latest")
    p.add_argument("--shards", required=True, type=Path, help="chat shards (data/build_chat.py) with the prompts")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, type=Path, help="output shard folder")
    p.add_argument("--k", type=int, default=8, help="responses sampled per prompt")
    p.add_argument("--prompts", type=int, default=256, help="prompts taken from the split")
    p.add_argument("--scorer", default="rule", help="rule, lm:CHECKPOINT or package.module:Class")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    summary = rejection_sample(checkpoint=args.checkpoint, shards=args.shards, split=args.split, out=args.out,
                               k=args.k, prompts=args.prompts, scorer=load_scorer(args.scorer),
                               temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                               seed=args.seed, log=lambda m: print(f"herd rs: {m}", flush=True))
    print(json.dumps(summary, indent=2))
    return 0


__all__ = ["Scorer", "RuleScorer", "LMScorer", "load_scorer", "repetition", "rejection_sample", "register_commands"]
