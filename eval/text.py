"""`herd eval text`: held-out perplexity of a checkpoint's language model (llama3-spec §1.8).

    herd eval text --checkpoint runs/demo/text_sft --shards runs/demo/data/text --split validation --out DIR
    herd eval text --checkpoint DIR --manifest docs.jsonl --out DIR      # lines {"text": "…"}

Each document is scored on its own (`<|begin_of_text|>` + text + `<|end_of_text|>`), in windows of
`--seq-len` tokens that overlap by one, so every token after the first is predicted exactly once
and documents never see each other. Any checkpoint with a language model works: a fused model is
scored through its frozen LM. Writes scores.json (nll, perplexity, tokens, documents) and
per-document JSONL (id, tokens, nll).

scores.json also measures in-context copying, which a frozen LM needs to repeat what an adapter
puts in its prompt (the speech adapter's "Repeat after me", llama3-spec §5.4). The first 17–32
tokens (`COPY_SPANS`) of each of the first `COPY_DOCUMENTS` documents are given twice in a row; the
score is the greedy next-token accuracy on the second occurrence (`copy_accuracy`) against the
first (`copy_accuracy_first_pass`). An LM with induction heads (Olsson et al. 2022) predicts
nearly every token of the repeat; one without scores about what it scores on the first pass.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator

from eval.arguments import add_source_arguments


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("text", help="held-out perplexity of the language model",
                         description="Per-token perplexity of a checkpoint's LM on held-out documents.")
    add_source_arguments(p, checkpoint="any LM", shards="text shard folder (manifest.json + .tar)",
                         manifest='{"text": …}', split="validation", unit="documents")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per scoring window")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    p.set_defaults(handler=run)


def documents(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(id, text) of every document to score, in a fixed order."""
    if args.manifest is not None:
        from eval.manifest import read_manifest_lines

        records = list(read_manifest_lines(args.manifest, required=("text",)))  # all errors before any work
        for i, record in enumerate(records):
            yield record.get("id", f"line{i + 1}"), record["text"]
        return
    from data.shards import ShardReader, decode_text, split_shards

    reader = ShardReader(split_shards(args.shards, args.split), shuffle=False, epochs=1, decode=decode_text,
                         required=("txt",))
    for sample in reader:
        yield sample["__key__"], sample["txt"]


COPY_SPANS = (17, 22, 27, 32)
"""Tokens repeated per document by the copying score, by turns: a model that copies from one fixed
distance back (what copy rows of one span length teach, train/copy_curriculum.py) cannot score."""
COPY_DOCUMENTS = 256
"""Documents the copying score uses at most."""


def copy_rows(docs: list[list[int]], bos_id: int, spans: tuple[int, ...] = COPY_SPANS) -> list[list[int]]:
    """BOS + the first `span` tokens after BOS of each document long enough, twice; document i
    repeats spans[i % len(spans)] tokens."""
    rows = []
    for i, d in enumerate(docs):
        span = spans[i % len(spans)]
        if len(d) > span:
            rows.append([bos_id, *d[1:span + 1], *d[1:span + 1]])
    return rows


def copy_accuracy(lm, rows: list[list[int]]) -> dict[str, float]:
    """Greedy next-token accuracy on the repeated span of each `copy_rows` row (its first token
    excluded: nothing announces the repeat) and on the same positions of the first pass."""
    import torch

    repeat = first = counted = 0
    for length in sorted({len(r) for r in rows}):  # rows of one span length run as one batch
        x = torch.tensor([r for r in rows if len(r) == length])
        span = (length - 1) // 2
        with torch.inference_mode():
            hits = lm(x[:, :-1]).argmax(-1) == x[:, 1:]  # hits[:, i] predicts token i + 1
        repeat += int(hits[:, span + 1:].sum())
        first += int(hits[:, 1:span].sum())
        counted += hits[:, span + 1:].numel()
    return {"copy_accuracy": repeat / counted, "copy_accuracy_first_pass": first / counted, "copy_rows": len(rows)}


def windows(ids: list[int], seq_len: int) -> Iterator[list[int]]:
    """Overlapping windows of ≤ seq_len + 1 tokens: each token after the first is a target once."""
    for start in range(0, max(1, len(ids) - 1), seq_len):
        yield ids[start:start + seq_len + 1]


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from text.tokenizer import load_tokenizer
    from train.checkpoint import resolve_checkpoint
    from train.models import load_model

    ckpt = resolve_checkpoint(args.checkpoint)
    model, meta = load_model(ckpt)
    lm = getattr(model, "text_model", model)  # fused models: score the frozen LM they wrap
    tokenizer = load_tokenizer(ckpt)
    args.out.mkdir(parents=True, exist_ok=True)
    per_doc, total_nll, total_tokens = [], 0.0, 0
    copy_docs: list[list[int]] = []
    pending: list[tuple[int, list[int]]] = []  # (document index, window)

    def flush() -> None:
        nonlocal total_nll, total_tokens
        width = max(len(w) for _, w in pending)
        batch = torch.full((len(pending), width), -100, dtype=torch.long)
        for row, (_, w) in enumerate(pending):
            batch[row, :len(w)] = torch.tensor(w)
        inputs, targets = batch[:, :-1].clamp(min=0), batch[:, 1:]
        with torch.inference_mode():
            logp = torch.log_softmax(lm(inputs).float(), dim=-1)
        nll = -logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * (targets != -100)
        for row, (doc, _) in enumerate(pending):
            per_doc[doc]["nll_sum"] += float(nll[row].sum())
            per_doc[doc]["tokens"] += int((targets[row] != -100).sum())
        total_nll += float(nll.sum())
        total_tokens += int((targets != -100).sum())
        pending.clear()

    for doc_id, text in tqdm(documents(args), desc="eval text", unit="doc"):
        if args.limit and len(per_doc) >= args.limit:
            break
        per_doc.append({"id": doc_id, "nll_sum": 0.0, "tokens": 0})
        ids = tokenizer.encode(text, bos=True, eos=True)
        if len(copy_docs) < COPY_DOCUMENTS:
            copy_docs.append(ids[:max(COPY_SPANS) + 1])
        for w in windows(ids, args.seq_len):
            pending.append((len(per_doc) - 1, w))
            if len(pending) == args.batch_size:
                flush()
    if pending:
        flush()
    if not total_tokens:
        raise ValueError(f"no tokens to score in {args.manifest or args.shards}")
    nll = total_nll / total_tokens
    scores = {"task": "text", "checkpoint": str(ckpt), "stage": meta.get("stage"),
              "source": str(args.manifest or args.shards), "split": None if args.manifest else args.split,
              "documents": len(per_doc), "tokens": total_tokens, "nll": nll, "perplexity": math.exp(nll)}
    rows = copy_rows(copy_docs, tokenizer.bos_id)
    if rows:
        scores.update(copy_accuracy(lm, rows))
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2))
    with open(args.out / "samples.jsonl", "w") as f:
        for d in per_doc:
            f.write(json.dumps({"id": d["id"], "tokens": d["tokens"],
                                "nll": d["nll_sum"] / max(d["tokens"], 1)}) + "\n")
    copying = (f"; copies {scores['copy_accuracy']:.1%} of a repeated span "
               f"({scores['copy_accuracy_first_pass']:.1%} on its first pass)" if rows else "")
    print(f"text perplexity {scores['perplexity']:.2f} (nll {nll:.4f}) over {total_tokens:,} tokens "
          f"in {len(per_doc)} documents{copying} → {args.out / 'scores.json'}")
    return 0


__all__ = ["register", "run", "documents", "windows", "COPY_SPANS", "COPY_DOCUMENTS", "copy_rows", "copy_accuracy"]
