"""The run report: `RUN/report.md` and `RUN/report.html` from what the stages and evals wrote.

    herd eval report --run runs/demo          # or eval.report.write_report(Path("runs/demo"))

Nothing in the report is typed in: every number is read from a file under the run folder —
dataset manifests (`data/*/manifest.json`), each stage's `metrics.jsonl` and `loss.png`, each
eval's `scores.json` and figures (`eval/*/`), the demo's stage timings (`timings.json`) and the
scripted chat (`chat/transcript.json`). A section whose files are absent says so instead of
guessing. The HTML is the same Markdown rendered with the `markdown` package, figures inlined by
relative path.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STAGES = ("text_pretrain", "text_sft", "text_dpo", "vision_clip", "vision_adapter", "video_adapter",
          "speech_bestrq", "speech_adapter", "guard_sft")
"""Run folders of the demo's training stages, in pipeline order."""
EVALS = {"text": "Text: held-out perplexity", "probe": "Images: object names in the frozen encoder (linear probe)",
         "caption": "Images: captioning",
         "video": "Video: motion and captions", "asr": "Speech: recognition", "guard": "Safety guard"}
"""eval/<task> folders and their section titles."""
HEADLINE = {"text": ("perplexity", "nll", "tokens", "copy_accuracy", "copy_accuracy_first_pass"),
            "probe": ("probe_accuracy", "random_encoder_accuracy", "chance", "majority"),
            "caption": ("model.CIDEr-D", "model.BLEU-4", "model.exact_match", "baseline.CIDEr-D", "baseline.BLEU-4"),
            "video": ("motion_accuracy", "single_frame_motion_accuracy", "image_model_motion_accuracy", "cider_d",
                      "bleu_4"),
            "asr": ("overall.wer", "overall.cer"), "guard": ("precision", "recall", "f1", "category_accuracy")}
"""Scores shown first in each eval section (any other scalar in scores.json follows)."""


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("report", help="write RUN/report.md and report.html from a run's outputs",
                         description="Collect data counts, loss curves, eval scores, figures, timings "
                                     "and the chat transcript of a run folder into one report.")
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="the run folder (runs/demo)")
    p.set_defaults(handler=lambda args: print(f"report → {write_report(args.run)}") or 0)


def write_report(run: Path) -> Path:
    """Write run/report.md and run/report.html; return the Markdown path."""
    run = Path(run)
    parts = [f"# herd run report: `{run}`\n",
             f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Every figure below is read "
             "from the files named in its section.\n",
             _timings(run), _data(run), _stages(run)]
    parts += [_eval_section(run, task, title) for task, title in EVALS.items()]
    parts.append(_chat(run))
    text = "\n".join(p for p in parts if p)
    md = run / "report.md"
    md.write_text(text)
    _write_html(text, run / "report.html")
    return md


# --- sections ---------------------------------------------------------------------------------

def _timings(run: Path) -> str:
    timings = _json(run / "timings.json")
    if not timings:
        return "## Wall time\n\nNo `timings.json` (the demo script writes it).\n"
    rows = [f"| {name} | {seconds / 60:.1f} |" for name, seconds in timings.get("steps", {}).items()]
    total = timings.get("total_s")
    lines = ["## Wall time (`timings.json`)\n", "| step | minutes |", "|---|---|", *rows]
    if total is not None:
        lines.append(f"| **total** | **{total / 60:.1f}** |")
    return "\n".join(lines) + "\n"


def _data(run: Path) -> str:
    manifests = sorted((run / "data").glob("*/manifest.json"))
    if not manifests:
        return "## Data\n\nNo shard folders under `data/`.\n"
    splits = ("train", "validation", "test")
    lines = ["## Data (samples per split, from each `manifest.json`)\n",
             "| dataset | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for m in manifests:
        info = _json(m).get("splits", {})
        lines.append(f"| {m.parent.name} | " + " | ".join(str(info.get(s, {}).get("count", "–")) for s in splits) + " |")
    return "\n".join(lines) + "\n"


def _stages(run: Path) -> str:
    from train.metrics import PLOT_FILE, plot_losses, read_metrics

    lines = ["## Training stages (last logged metrics of each `metrics.jsonl`)\n",
             "| stage | steps | final train loss | last validation | throughput |", "|---|---|---|---|---|"]
    figures = []
    for stage in STAGES:
        metrics = run / stage / "metrics.jsonl"
        if not metrics.is_file():
            continue
        rows = read_metrics(metrics)
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if any(k.startswith("val") or "R@" in k for k in r if k != "step")
               and "loss" not in r]
        last_val = ", ".join(f"{k} {v:.4g}" for k, v in (val[-1] if val else {}).items()
                             if k != "step" and isinstance(v, (int, float)))
        speed = train[-1].get("tokens_per_s") if train else None
        lines.append(f"| {stage} | {rows[-1]['step'] if rows else 0} | "
                     f"{train[-1]['loss']:.4f} | {last_val or '–'} | "
                     f"{f'{speed:,.0f} tok/s' if speed else '–'} |" if train else f"| {stage} | – | – | – | – |")
        plot = run / stage / PLOT_FILE
        if not plot.is_file():
            plot_losses(metrics, plot, title=stage)
        if plot.is_file():
            figures.append(f"![{stage} loss]({plot.relative_to(run)})")
    return "\n".join(lines) + "\n\n" + " ".join(figures) + "\n"


def _eval_section(run: Path, task: str, title: str) -> str:
    folder = run / "eval" / task
    scores = _json(folder / "scores.json")
    if not scores:
        return f"## {title}\n\nNot evaluated (no `eval/{task}/scores.json`).\n"
    flat = _flatten(scores)
    first = [k for k in HEADLINE.get(task, ()) if k in flat]
    rest = [k for k in flat if k not in first and isinstance(flat[k], (int, float)) and not isinstance(flat[k], bool)]
    lines = [f"## {title} (`eval/{task}/scores.json`)\n", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(flat[k])} |" for k in first + rest]
    figures = [f"![{task} {p.stem}]({p.relative_to(run)})" for p in sorted(folder.glob("*.png"))]
    return "\n".join(lines) + ("\n\n" + "\n\n".join(figures) if figures else "") + "\n"


def _chat(run: Path) -> str:
    transcript = _json(run / "chat" / "transcript.json")
    if not transcript:
        return "## Chat\n\nNo scripted chat (`chat/transcript.json`).\n"
    lines = ["## Scripted chat with `final` (`chat/transcript.json`)\n"]
    for turn in transcript.get("turns", []):
        media = f" [{turn['media']}: `{turn['path']}`]" if turn.get("media") else ""
        lines.append(f"**user**{media}: {turn['prompt']}\n")
        lines.append(f"**herd**: {turn['answer']}\n")
        if turn.get("expected"):
            lines.append(f"*reference*: {turn['expected']}\n")
    return "\n".join(lines)


# --- helpers ----------------------------------------------------------------------------------

def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _write_html(markdown_text: str, path: Path) -> None:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    path.write_text("<!doctype html><meta charset='utf-8'><title>herd report</title>"
                    "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;}"
                    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
                    "img{max-width:100%}</style>" + body)


__all__ = ["register", "write_report", "STAGES", "EVALS"]
