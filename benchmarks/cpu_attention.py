"""Reduced-precision attention on CPU: `F.scaled_dot_product_attention` forward + backward in bf16
as PyTorch runs it, against herd's `text.attention.sdpa` (fp32 inside for short training rows).

Why: on a CPU the bf16 flash-attention *backward* is several times slower than the fp32 one at the
short rows of the media stages (48-token captions, 65-token image tiles), so bf16 autocast lost to
fp32 in every stage but text-pretrain. The forward is not affected, nor are long rows, where bf16
wins; `text.attention.UPCAST_MAX_KEYS` is where this table crosses over.

    python benchmarks/cpu_attention.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from text.attention import UPCAST_MAX_KEYS, sdpa

SHAPES = {  # name: (batch, query heads, kv heads, query length, key length, head dim, causal)
    "caption rows 16×48 (LM)": (16, 8, 4, 48, 48, 32, True),
    "text→image 48×65 (cross-attn)": (16, 8, 4, 48, 65, 32, False),
    "image tile 65 tokens (ViT)": (16, 4, 4, 65, 65, 16, False),
    "pretrain rows 8×256": (8, 8, 4, 256, 256, 32, True),
    "rows 4×512": (4, 8, 4, 512, 512, 32, True),
    "rows 2×1024": (2, 8, 4, 1024, 1024, 32, True),
}


def fwd_bwd_ms(attend, shape, dtype, repeats: int) -> float:
    """Median ms of one forward + backward through `attend` at `shape` in `dtype`."""
    B, H, K, T, S, D, causal = shape
    q = torch.randn(B, H, T, D, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(B, K, S, D, dtype=dtype, requires_grad=True) for _ in range(2))

    def run():
        attend(q, k, v, is_causal=causal, enable_gqa=True).sum().backward()
    run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"attention forward + backward on CPU, {args.threads} threads, median of {args.repeats}; "
          f"herd computes in fp32 up to {UPCAST_MAX_KEYS} keys")
    print(f"  {'shape':<32} {'fp32':>9} {'bf16 torch':>11} {'bf16 herd':>10} {'herd/torch':>11}")
    for name, shape in SHAPES.items():
        fp32 = fwd_bwd_ms(F.scaled_dot_product_attention, shape, torch.float32, args.repeats)
        torch_bf16 = fwd_bwd_ms(F.scaled_dot_product_attention, shape, torch.bfloat16, args.repeats)
        herd_bf16 = fwd_bwd_ms(sdpa, shape, torch.bfloat16, args.repeats)
        print(f"  {name:<32} {fp32:7.2f}ms {torch_bf16:9.2f}ms {herd_bf16:8.2f}ms {torch_bf16 / herd_bf16:10.2f}×")


if __name__ == "__main__":
    main()
