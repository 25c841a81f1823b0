"""`herd scaling sweep|fit|predict|downstream` (llama3-spec §1.3). Nothing heavy at import time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("scaling", help="IsoFLOP sweeps, power-law fits and predictions",
                                   description="Scaling laws as in Llama 3 §3.2.1.")
    sub = parser.add_subparsers(dest="scaling_command", metavar="COMMAND", required=True)

    sweep = sub.add_parser("sweep", help="train one tiny model per (budget, size); resumable, JSONL results")
    sweep.add_argument("--budgets", type=_floats, default=[3e11, 1e12, 3e12], help="training FLOPs, comma-separated")
    sweep.add_argument("--sizes", default="16x1,24x1,32x2,48x2,64x2", help="model shapes DIMxLAYERS, comma-separated")
    sweep.add_argument("--shards", default="runs/demo/data/text")
    sweep.add_argument("--tokenizer", default=None,
                       help="tokenizer.json (default: train a --vocab-size BPE on the shards into --out)")
    sweep.add_argument("--vocab-size", type=int, default=1024)
    sweep.add_argument("--seq-len", type=int, default=128)
    sweep.add_argument("--batch-size", type=int, default=8)
    sweep.add_argument("--lr", type=float, default=3e-3)
    sweep.add_argument("--out", type=Path, required=True, help="folder for results.jsonl and the runs")
    sweep.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="extra config override for every run")
    sweep.set_defaults(handler=_sweep)

    fit = sub.add_parser("fit", help="parabola per budget, then N*(C) = A·C^α; prints (α, A) and plots")
    fit.add_argument("results", type=Path, help="results.jsonl of a sweep")
    fit.add_argument("--plot", type=Path, default=None, help="PNG (default: beside the results)")
    fit.add_argument("--held-out", type=_floats, default=[], metavar="FLOPS",
                     help="budgets left out of the fit and predicted from it (comma-separated)")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(handler=_fit)

    pred = sub.add_parser("predict", help="compute-optimal tokens and parameters for a FLOP budget")
    pred.add_argument("--alpha", type=float, required=True)
    pred.add_argument("--A", dest="coef", type=float, required=True)
    pred.add_argument("--flops", type=float, required=True)
    pred.add_argument("--preset", default="405B", help="shape (layers, width) for the attention FLOP term")
    pred.add_argument("--seq-len", type=int, default=8192)
    pred.add_argument("--json", action="store_true")
    pred.set_defaults(handler=_predict)

    down = sub.add_parser("downstream", help="two-step fit FLOPs → NLL → accuracy on a sweep's runs")
    down.add_argument("results", type=Path)
    down.add_argument("--flops", type=_floats, default=[], help="budgets to predict accuracy for")
    down.set_defaults(handler=_downstream)


def _sweep(args: argparse.Namespace) -> int:
    from text.scaling_sweep import SweepPlan, run_sweep

    plan = SweepPlan(budgets=args.budgets, sizes=[s for s in args.sizes.split(",") if s], shards=args.shards,
                     tokenizer=args.tokenizer, vocab_size=args.vocab_size, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
                     extra=args.set)
    records = run_sweep(plan, args.out, log=lambda m: print(f"herd scaling sweep: {m}", flush=True))
    print(f"{len(records)} runs in {args.out / 'results.jsonl'}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from text.scaling import check_held_out, plot_isoflops
    from text.scaling_sweep import read_results

    records = read_results(args.results)
    if not records:
        raise FileNotFoundError(f"no results in {args.results}")
    law, fits, checks = check_held_out(records, args.held_out)
    plot = args.plot or args.results.with_name("isoflops.png")
    plot_isoflops(records, fits, law, plot)
    if args.json:
        print(json.dumps({"alpha": law.alpha, "A": law.A, "budgets": [f.__dict__ for f in fits],
                          "held_out": [c.__dict__ for c in checks]}, indent=2))
        return 0
    print(f"{'FLOPs':>9} {'runs':>4} {'opt tokens':>11} {'loss':>7}  minimum")
    for f in fits:
        print(f"{f.flops:>9.2e} {f.runs:>4} {f.tokens_opt:>11.4g} {f.loss_opt:>7.4f}  "
              f"{'inside the sweep' if f.interior else 'AT THE EDGE (extrapolated)'}")
    print(f"N*(C) = A·C^α with α = {law.alpha:.4f}, A = {law.A:.4g}")
    for c in checks:
        print(f"held out {c.flops:.2e}: predicted {c.tokens_predicted:.4g} tokens, loss {c.loss_predicted:.4f}; "
              f"measured {c.tokens_measured:.4g} tokens, loss {c.loss_measured:.4f} "
              f"(tokens ×{c.tokens_ratio:.2f}, loss {c.loss_predicted - c.loss_measured:+.4f})")
    print(f"plot: {plot}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from text.config import create_config
    from text.scaling import sensitivity

    config = create_config(args.preset)
    rows = sensitivity(args.flops, args.alpha, args.coef, config=config, seq_len=args.seq_len)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"C = {args.flops:.3g} FLOPs, N*(C) = {args.coef:g}·C^α; parameters from C = (6·N + 6·L·d·T)·D "
          f"with the {args.preset} shape (L {config.n_layers}, d {config.dim}) at T = {args.seq_len}")
    print(f"{'alpha':>7} {'tokens':>10} {'params (6ND)':>13} {'params (+attn)':>15}")
    for r in rows:
        mark = "  <- given" if r["alpha"] == args.alpha else ""
        print(f"{r['alpha']:>7.3f} {r['tokens'] / 1e12:>9.2f}T {r['params_6nd'] / 1e9:>12.1f}B "
              f"{r['params'] / 1e9:>14.1f}B{mark}")
    print("a rounded α moves the answer this much: treat the middle row as ±the spread, not a point")
    return 0


def _downstream(args: argparse.Namespace) -> int:
    from text.scaling import fit_downstream, fit_isoflops
    from text.scaling_sweep import read_results

    records = read_results(args.results)
    fits = fit_isoflops(records)
    # Step 1 on the best run of each budget (the paper's compute-optimal models).
    best = [min((r for r in records if r["budget"] == f.flops), key=lambda r: r["val_loss"]) for f in fits]
    law = fit_downstream([r["flops"] for r in best], [r["val_loss"] for r in best],
                         [r["val_loss"] for r in records], [r["val_acc"] for r in records])
    print(f"step 1: NLL = {law.slope:.4f}·log10(C) + {law.intercept:.4f}")
    print(f"step 2: acc = {law.lo:.3f} + ({law.hi:.3f} − {law.lo:.3f})·σ(−{law.k:.3f}·(NLL − {law.x0:.3f}))")
    for r in records:
        print(f"  {r['budget']:.2e} {r['size']:>7}: NLL {r['val_loss']:.4f} acc {r['val_acc']:.4f} "
              f"(fit from NLL {law.accuracy_from_nll(r['val_loss']):.4f})")
    for c in args.flops:
        print(f"predicted at {c:.3g} FLOPs: NLL {law.nll(c):.4f}, accuracy {law.accuracy(c):.4f}")
    return 0


__all__ = ["register"]
