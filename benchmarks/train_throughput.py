"""Training throughput of `herd train text-pretrain`: tokens/s and model-FLOPs utilisation (MFU)
against a matmul peak measured in this process, and the ratio to Hugging Face
`LlamaForCausalLM` + a plain PyTorch loop at the same config, batch, optimizer and dtype.

    python benchmarks/train_throughput.py [--preset tiny] [--seq-len 256] [--batch 8] [--steps 20]
                                          [--dtype auto|fp32|bf16] [--json OUT]

MFU = tokens/s × training FLOPs per token (6·N_matmul + attention, `text.accounting`) / peak,
where peak is the best of square matmuls (1024–4096) in the same dtype. Synthetic batches, so the
data path is not measured here (benchmarks/data_throughput.py does that).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """Best FLOP/s of square matmuls in `dtype` on `device`."""
    best = 0.0
    for n in (1024, 2048, 4096) if device.type == "cuda" else (512, 1024, 2048):
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        a @ b
        _sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        _sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def herd_tokens_per_s(args, dtype: str) -> list[float]:
    """Per-step tokens/s of `herd train text-pretrain` (the real loop, synthetic batches)."""
    from train.config import load_config
    from train.stage_configs import PretrainConfig
    from train.loop import train
    from train.metrics import read_metrics
    from train.stages import text_pretrain

    with tempfile.TemporaryDirectory() as run:
        config = load_config(PretrainConfig, None, [
            f"model.preset={args.preset}", "data.synthetic=true", f"data.seq_len={args.seq_len}",
            f"data.batch_size={args.batch}", f"train.steps={args.steps}", f"train.dtype={dtype}",
            f"run.dir={run}", "run.log_every=1", "run.progress=false", "train.eval_batches=1",
            f"checkpoint.every={10**9}", f"model.compile={str(args.compile).lower()}"])
        train(config, text_pretrain.build, stage="text-pretrain")
        rows = [r for r in read_metrics(Path(run) / "metrics.jsonl") if "tokens_per_s" in r]
    return [r["tokens_per_s"] for r in rows[len(rows) // 4:]]  # skip warm-up steps


def hf_tokens_per_s(args, dtype: str, device: torch.device) -> list[float] | None:
    """Per-step tokens/s of HF LlamaForCausalLM + a plain AdamW loop at the same config."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        return None
    from text.config import create_config

    c = create_config(args.preset)
    config = LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_hidden_dim,
                         num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
                         num_key_value_heads=c.n_kv_heads, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
                         max_position_embeddings=args.seq_len, tie_word_embeddings=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, c.vocab_size, (args.batch, args.seq_len + 1), device=device)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(input_ids=tokens[:, :-1], labels=tokens[:, 1:]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - start)
    return [args.batch * args.seq_len / t for t in times[len(times) // 4:]]


def summarise(rates: list[float]) -> dict[str, float]:
    """Median and best step. On a shared machine the best step is the least disturbed one."""
    ordered = sorted(rates)
    return {"median": ordered[len(ordered) // 2], "best": ordered[-1]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="alternating herd/HF rounds")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from text.accounting import training_flops
    from text.config import create_config
    from train.loop import resolve_dtype

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(args.dtype, device)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    peak = matmul_peak(torch_dtype, device)
    flops_per_token = training_flops(create_config(args.preset), 1, args.seq_len)
    herd_rates, hf_rates = [], []
    for _ in range(args.rounds):  # alternate, so both see the same machine load
        herd_rates += herd_tokens_per_s(args, dtype)
        if not args.skip_hf:
            hf_rates += hf_tokens_per_s(args, dtype, device) or []
    herd = summarise(herd_rates)
    hf = summarise(hf_rates) if hf_rates else None
    result = {"device": str(device), "threads": torch.get_num_threads(), "preset": args.preset,
              "seq_len": args.seq_len, "batch": args.batch, "dtype": dtype,
              "matmul_peak_gflops": peak / 1e9, "flops_per_token": flops_per_token,
              "herd_tokens_per_s": herd, "herd_mfu": {k: v * flops_per_token / peak for k, v in herd.items()},
              "hf_tokens_per_s": hf,
              "hf_mfu": {k: v * flops_per_token / peak for k, v in hf.items()} if hf else None,
              "herd_over_hf": {k: herd[k] / hf[k] for k in herd} if hf else None}
    print(f"device {device} ({result['threads']} threads), preset {args.preset}, batch {args.batch}×{args.seq_len}, {dtype}")
    print(f"matmul peak        {peak / 1e9:10.1f} GFLOP/s")
    for name, rates in (("herd loop", herd), ("HF Llama + loop", hf)):
        if rates:
            mfu = {k: v * flops_per_token / peak for k, v in rates.items()}
            print(f"{name:18s} median {rates['median']:8.0f} tokens/s (MFU {mfu['median']:.1%})   "
                  f"best {rates['best']:8.0f} tokens/s (MFU {mfu['best']:.1%})")
    if hf:
        print(f"herd / HF          median {herd['median'] / hf['median']:.2f}×   best {herd['best'] / hf['best']:.2f}×")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
