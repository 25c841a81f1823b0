"""Peak memory of a long forward pass: the `tiny` model (max_seq_len raised to 32K) over one
sequence of 4K/8K/16K/32K tokens, inference (no grad), as one document (causal SDPA) and as packed
documents (`doc_ids`, block-diagonal mask built per query chunk). Each length runs in a fresh
subprocess so its peak RSS is its own. Target: memory grows about linearly (no T×T mask).

    python benchmarks/long_context_memory.py [--lengths 4096 8192 16384 32768] [--doc-len 2048]

Printed per run: peak RSS, the part above the loaded model (the pass itself), that part per 1K
tokens, and seconds. The logits alone are T × 8192 fp32 (32 MiB per 1K tokens); a T×T bool
mask would be 1 GiB at 32K, a T×T fp32 score matrix 4 GiB per head.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(length: int, doc_len: int) -> dict:
    """One forward pass in this process; returns its memory and time."""
    import torch

    from text.config import create_config
    from text.model import Transformer

    torch.manual_seed(0)
    model = Transformer(create_config("tiny", max_seq_len=32_768)).eval()
    tokens = torch.randint(0, 8192, (1, length))
    doc_ids = (torch.arange(length) // doc_len)[None] if doc_len else None
    before = _rss_mib()
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(tokens, doc_ids=doc_ids)
    seconds = time.perf_counter() - start
    assert logits.shape == (1, length, 8192)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"length": length, "doc_len": doc_len, "before_mib": before, "peak_mib": peak, "seconds": seconds}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192, 16_384, 32_768])
    parser.add_argument("--doc-len", type=int, default=2048, help="document length of the packed runs")
    parser.add_argument("--child", nargs=2, type=int, metavar=("LENGTH", "DOC_LEN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return

    print("tiny preset (max_seq_len 32768), batch 1, inference; one fresh process per run")
    print(f"{'tokens':>7} {'layout':>16} {'peak MiB':>9} {'pass MiB':>9} {'MiB/1K tok':>10} {'seconds':>8}")
    per_k: dict[str, list[float]] = {}
    for doc_len in (0, args.doc_len):
        layout = f"docs of {doc_len}" if doc_len else "one document"
        for length in args.lengths:
            out = subprocess.run([sys.executable, __file__, "--child", str(length), str(doc_len)],
                                 cwd=REPO, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            extra = r["peak_mib"] - r["before_mib"]
            per_k.setdefault(layout, []).append(extra / (length / 1024))
            print(f"{length:>7} {layout:>16} {r['peak_mib']:>9.0f} {extra:>9.0f} {extra / (length / 1024):>10.1f} "
                  f"{r['seconds']:>8.1f}", flush=True)
    for layout, values in per_k.items():
        # Linear growth keeps the per-1K figure flat (fixed costs make it fall at first); a T×T
        # term would make it grow with T — 8× from 4K to 32K.
        growth = values[-1] / min(values)
        verdict = "about linear" if growth < 1.5 else "SUPER-LINEAR"
        print(f"verdict ({layout}): pass memory per 1K tokens at {args.lengths[-1]} tokens is {growth:.2f}× "
              f"its lowest — {verdict}")


if __name__ == "__main__":
    main()
