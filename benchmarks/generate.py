"""Greedy decoding speed: herd `generate` vs Hugging Face `LlamaForCausalLM.generate` on the same
weights (the `tiny` preset, fp32), at batch 1 and batch 8. Target: herd ≥ 3× HF at batch 1.

    python benchmarks/generate.py [--rounds 3] [--new-tokens 128] [--prompt-len 32]

The two run alternately in one process, so load from other processes hits both alike; each
figure is the median over rounds of new tokens per second (all rows counted). Both must produce
the same tokens (checked), so they do the same work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from text.config import create_config
from text.convert import hf_config, to_hf_state_dict
from text.generate import generate
from text.model import Transformer

TARGET = 3.0


def build_models(seed: int = 0):
    """A random `tiny` herd model and the `LlamaForCausalLM` holding the same tensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    herd = Transformer(create_config("tiny")).eval()
    values = hf_config(herd.config)
    values.pop("architectures"), values.pop("model_type"), values.pop("torch_dtype")
    hf = LlamaForCausalLM(LlamaConfig(**values)).eval()
    hf.load_state_dict(to_hf_state_dict(herd.state_dict()), strict=True)
    hf.generation_config.eos_token_id = None  # decode exactly the requested count, like herd
    hf.generation_config.pad_token_id = 0
    return herd, hf


def run_herd(model, prompts: torch.Tensor, n: int) -> list[list[int]]:
    return generate(model, prompts.tolist(), max_new_tokens=n)


@torch.inference_mode()
def run_hf(model, prompts: torch.Tensor, n: int) -> list[list[int]]:
    out = model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                         min_new_tokens=n, do_sample=False)
    return out[:, prompts.shape[1]:].tolist()


def measure(fn, model, prompts: torch.Tensor, n: int) -> tuple[float, list[list[int]]]:
    start = time.perf_counter()
    tokens = fn(model, prompts, n)
    return prompts.shape[0] * n / (time.perf_counter() - start), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    herd, hf = build_models()
    print(f"tiny preset, fp32, {torch.get_num_threads()} threads, prompt {args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens, median of {args.rounds} alternating rounds")
    ratios = {}
    for batch in args.batches:
        prompts = torch.randint(0, herd.config.vocab_size - 256, (batch, args.prompt_len),
                                generator=torch.Generator().manual_seed(batch))
        run_herd(herd, prompts, 8), run_hf(hf, prompts, 8)  # warm-up
        speeds: dict[str, list[float]] = {"herd": [], "hf": []}
        for _ in range(args.rounds):
            h, ours = measure(run_herd, herd, prompts, args.new_tokens)
            t, theirs = measure(run_hf, hf, prompts, args.new_tokens)
            speeds["herd"].append(h), speeds["hf"].append(t)
        same = "identical tokens" if ours == theirs else "TOKENS DIFFER"
        h, t = statistics.median(speeds["herd"]), statistics.median(speeds["hf"])
        ratios[batch] = h / t
        print(f"batch {batch}: herd {h:8.1f} tok/s   HF {t:8.1f} tok/s   ratio {h / t:5.2f}×   ({same})")
    if 1 in ratios:
        verdict = "meets" if ratios[1] >= TARGET else "MISSES"
        print(f"verdict: herd/HF at batch 1 = {ratios[1]:.2f}× — {verdict} the ≥{TARGET:.0f}× target")


if __name__ == "__main__":
    main()
