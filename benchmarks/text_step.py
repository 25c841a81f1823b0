"""Training throughput: herd vs Hugging Face `LlamaForCausalLM` with the same config (the `tiny`
preset, ~8.9M parameters, vocab 8192), the same weights, batch (8 × 256 tokens), AdamW and dtype,
in fp32 and under bf16 autocast. Target: herd ≥ 1.5× HF in both.

    python benchmarks/text_step.py [--rounds 3] [--steps 2] [--dtypes fp32 bf16]

Each round runs `--steps` optimizer steps of herd, then of HF (after one warm-up step each), so
load from other processes hits both alike; the figure per model is the best round's tokens/s
(contention only ever slows a round down). A step is forward, next-token cross-entropy,
backward and `AdamW.step()`; herd computes its loss as the training unit does, HF through its
own `labels=` path.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from text.config import create_config
from text.convert import hf_config, to_hf_state_dict
from text.model import Transformer

TARGET = 1.5
BATCH, SEQ = 8, 256


def build_models(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    herd = Transformer(create_config("tiny")).train()
    values = hf_config(herd.config)
    values.pop("architectures"), values.pop("model_type"), values.pop("torch_dtype")
    hf = LlamaForCausalLM(LlamaConfig(**values, attn_implementation="sdpa")).train()
    hf.load_state_dict(to_hf_state_dict(herd.state_dict()), strict=True)
    return herd, hf


def herd_loss(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())


def hf_loss(model, tokens: torch.Tensor) -> torch.Tensor:
    return model(input_ids=tokens[:, :-1], labels=tokens[:, :-1]).loss


def run(model, loss_fn, optimizer, batches: list[torch.Tensor], dtype: str) -> float:
    """Seconds for one optimizer step per batch."""
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16"
                else contextlib.nullcontext())
    start = time.perf_counter()
    for tokens in batches:
        with autocast:
            loss = loss_fn(model, tokens)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def compare(dtype: str, rounds: int, steps: int) -> float:
    herd, hf = build_models()
    gen = torch.Generator().manual_seed(0)
    vocab = herd.config.vocab_size
    batches = [torch.randint(0, vocab, (BATCH, SEQ + 1), generator=gen) for _ in range(steps)]
    contenders = {
        "herd": (herd, herd_loss, torch.optim.AdamW(herd.parameters(), lr=1e-4, weight_decay=0.1)),
        "HF": (hf, hf_loss, torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.1)),
    }
    for model, loss_fn, opt in contenders.values():  # warm-up (allocator, oneDNN primitives)
        run(model, loss_fn, opt, batches[:1], dtype)
    best = {name: 0.0 for name in contenders}
    for _ in range(rounds):
        for name, (model, loss_fn, opt) in contenders.items():
            seconds = run(model, loss_fn, opt, batches, dtype)
            best[name] = max(best[name], steps * BATCH * SEQ / seconds)
    ratio = best["herd"] / best["HF"]
    print(f"{dtype:>4}: herd {best['herd']:8.1f} tok/s   HF {best['HF']:8.1f} tok/s   ratio {ratio:5.2f}×",
          flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per model per round")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = parser.parse_args()
    native_bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"tiny preset, batch {BATCH}×{SEQ}, AdamW, {torch.get_num_threads()} threads, "
          f"best of {args.rounds} alternating rounds of {args.steps} steps; "
          f"native bf16 matmul on this CPU: {native_bf16}")
    ratios = {dtype: compare(dtype, args.rounds, args.steps) for dtype in args.dtypes}
    for dtype, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"verdict {dtype}: herd/HF = {ratio:.2f}× — {verdict} the ≥{TARGET}× target")


if __name__ == "__main__":
    main()
