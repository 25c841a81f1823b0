"""Llama 3 architecture vs a nanoGPT-style GPT-2 of equal parameter count, trained by the same
herd loop on the same data; validation loss at equal tokens, both curves on one plot.

    python benchmarks/gpt2_baseline.py --shards DIR --tokenizer tokenizer.json [--steps 300]
    python benchmarks/gpt2_baseline.py --synthetic --steps 100            # no data needed

GPT-2 here is nanoGPT's: learned absolute positions, pre-LayerNorm with biases, GELU MLP (4×),
full multi-head attention, tied embeddings, no document mask. Its width is chosen so its
parameter count is the closest (multiple of 32) to the Llama preset's. Writes
`OUT/gpt2_vs_llama.png` and `OUT/gpt2_vs_llama.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(kw_only=True, frozen=True)
class GPT2Config:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    max_seq_len: int = 1024

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class GPT2Block(nn.Module):
    def __init__(self, c: GPT2Config):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn, self.proj = nn.Linear(c.dim, 3 * c.dim), nn.Linear(c.dim, c.dim)
        self.fc, self.fc_proj = nn.Linear(c.dim, 4 * c.dim), nn.Linear(4 * c.dim, c.dim)
        self.n_heads = c.n_heads

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.attn(self.ln_1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x))))


class GPT2(nn.Module):
    """nanoGPT's GPT-2 (Radford et al. 2019) with the herd model call signature."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.dim)
        self.wpe = nn.Embedding(config.max_seq_len, config.dim)
        self.layers = nn.ModuleList(GPT2Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.dim)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "fc_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: Tensor, *, doc_ids: Tensor | None = None) -> Tensor:
        """Logits [B, T, V]; doc_ids is accepted and ignored (GPT-2 has no document mask)."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.wte(tokens) + self.wpe(pos)
        for block in self.layers:
            h = block(h)
        return F.linear(self.ln_f(h), self.wte.weight)  # tied output embedding


def matched_gpt2(llama_params: int, vocab: int, n_layers: int, n_heads: int, seq_len: int) -> GPT2Config:
    """The GPT-2 width (multiple of 32) whose parameter count is closest to llama_params."""
    def count(dim: int) -> int:
        return vocab * dim + seq_len * dim + n_layers * (12 * dim * dim + 13 * dim) + 2 * dim

    dim = min(range(64, 4097, 32), key=lambda d: abs(count(d) - llama_params))
    heads = max(h for h in range(1, n_heads + 1) if dim % h == 0 and (dim // h) % 2 == 0)
    return GPT2Config(vocab_size=vocab, dim=dim, n_layers=n_layers, n_heads=heads, max_seq_len=seq_len)


def run(kind: str, args, out: Path) -> dict:
    from train.config import load_config
    from train.stage_configs import PretrainConfig
    from train.loop import train
    from train.metrics import read_metrics
    from train.stages import text_pretrain

    overrides = [f"model.preset={args.preset}", f"train.steps={args.steps}", f"run.dir={out / kind}",
                 f"data.seq_len={args.seq_len}", f"data.batch_size={args.batch}", f"optim.lr={args.lr}",
                 f"optim.warmup_steps={max(1, args.steps // 20)}", f"train.eval_every={args.eval_every}",
                 "train.eval_batches=8", "checkpoint.resume=none", f"checkpoint.every={10**9}",
                 "run.progress=false"]
    overrides += ["data.synthetic=true"] if args.synthetic else [f"data.shards={args.shards}",
                                                                 f"data.tokenizer={args.tokenizer}"]
    config = load_config(PretrainConfig, None, overrides)
    sizes = {}

    def build(config, env):
        unit = text_pretrain.build(config, env)
        llama_params = sum(p.numel() for p in unit.model.parameters())
        if kind == "gpt2":
            c = unit.model.config
            gpt = matched_gpt2(llama_params, c.vocab_size, c.n_layers, c.n_heads, args.seq_len)
            unit.model = GPT2(gpt).to(env.device)
            unit.write_samples = lambda path: None  # herd's generate() needs the Llama KV cache
        sizes[kind] = sum(p.numel() for p in unit.model.parameters())
        return unit

    train(config, build, stage="text-pretrain")
    rows = read_metrics(out / kind / "metrics.jsonl")
    tokens_at = {r["step"]: r["tokens"] for r in rows if "tokens" in r}
    val = [(tokens_at.get(r["step"], r["step"] * args.batch * args.seq_len), r["val_loss"]) for r in rows
           if "val_loss" in r]
    return {"parameters": sizes[kind], "val": val}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=Path)
    parser.add_argument("--tokenizer", type=Path)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpt2_baseline"))
    args = parser.parse_args()
    if not args.synthetic and not (args.shards and args.tokenizer):
        demo_shards, demo_tok = Path("runs/demo/data/text"), Path("runs/demo/tokenizer/tokenizer.json")
        if demo_shards.is_dir() and demo_tok.is_file():  # `make demo` built them
            args.shards, args.tokenizer = demo_shards, demo_tok
        else:
            print("gpt2_baseline: no --shards/--tokenizer and no runs/demo data; using synthetic batches")
            args.synthetic = True
    import shutil

    for kind in ("llama3", "gpt2"):
        shutil.rmtree(args.out / kind, ignore_errors=True)  # each comparison starts fresh
    args.out.mkdir(parents=True, exist_ok=True)
    results = {kind: run(kind, args, args.out) for kind in ("llama3", "gpt2")}
    for kind, r in results.items():
        print(f"{kind:7s} {r['parameters']:>12,} params   final val loss {r['val'][-1][1]:.4f} "
              f"at {r['val'][-1][0]:,} tokens")
    (args.out / "gpt2_vs_llama.json").write_text(json.dumps(results, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, r in results.items():
        ax.plot(*zip(*r["val"]), "o-", label=f"{kind} ({r['parameters'] / 1e6:.1f}M params)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Llama 3 vs GPT-2 at equal parameters, same loop and data")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "gpt2_vs_llama.png", dpi=100)
    print(f"wrote {args.out / 'gpt2_vs_llama.png'}")


if __name__ == "__main__":
    main()
