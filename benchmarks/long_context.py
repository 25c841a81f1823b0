"""Memory and time of one *training* step against sequence length (llama3-spec §1.4): the `tiny`
LM, batch 1, forward + backward + AdamW step, as one document (causal SDPA, no mask) and as packed
documents (`doc_ids`: the block-diagonal mask is built per chunk of queries, never T×T). Each run
is a fresh subprocess so its peak RSS is its own; time is the median of a few steps after a warm-up.

    python benchmarks/long_context.py [--lengths 256 1024 4096 8192] [--doc-len 512] [--plot out.png]

Prints a table (peak MiB, MiB above the idle model, seconds per step, tokens/s) and writes the plot.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(length: int, doc_len: int, steps: int) -> dict:
    import torch

    from text.config import create_config
    from text.model import Transformer

    torch.manual_seed(0)
    model = Transformer(create_config("tiny", max_seq_len=max(length, 4096)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, 8192, (1, length + 1))
    doc_ids = (torch.arange(length) // doc_len)[None] if doc_len else None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        logits = model(tokens[:, :-1], doc_ids=doc_ids)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"length": length, "doc_len": doc_len, "before_mib": before, "peak_mib": peak,
            "seconds": statistics.median(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    parser.add_argument("--doc-len", type=int, default=512, help="document length of the packed runs")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run (after one warm-up)")
    parser.add_argument("--plot", type=Path, default=Path("runs/bench/long_context.png"))
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print("tiny preset, batch 1, one training step (fwd + bwd + AdamW), fp32; one fresh process per run")
    print(f"{'tokens':>7} {'layout':>14} {'peak MiB':>9} {'step MiB':>9} {'MiB/1K tok':>10} {'s/step':>7} {'tok/s':>7}")
    results = []
    for doc_len in (0, args.doc_len):
        for length in args.lengths:
            out = subprocess.run([sys.executable, __file__, "--child", str(length), str(doc_len), str(args.steps)],
                                 cwd=REPO, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["step_mib"] = r["peak_mib"] - r["before_mib"]
            results.append(r)
            layout = f"docs of {doc_len}" if doc_len else "one document"
            print(f"{length:>7} {layout:>14} {r['peak_mib']:>9.0f} {r['step_mib']:>9.0f} "
                  f"{r['step_mib'] / (length / 1024):>10.1f} {r['seconds']:>7.2f} {length / r['seconds']:>7.0f}",
                  flush=True)
    plot(results, args.plot)
    print(f"plot: {args.plot}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (mem, sec) = plt.subplots(1, 2, figsize=(10, 4))
    for doc_len in sorted({r["doc_len"] for r in results}):
        rows = [r for r in results if r["doc_len"] == doc_len]
        label = f"docs of {doc_len}" if doc_len else "one document"
        mem.plot([r["length"] for r in rows], [r["step_mib"] for r in rows], "o-", label=label)
        sec.plot([r["length"] for r in rows], [r["seconds"] for r in rows], "o-", label=label)
    mem.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="step memory above the model (MiB)")
    sec.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="seconds per training step")
    for ax in (mem, sec):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
