"""The main job (`make demo`): real data → shards → tokenizer → tiny Llama 3 LM → generation.

One readable pipeline of `herd` commands. Every step is also runnable alone (the command is
printed). Re-running skips finished steps (each step's output is checked, not trusted blindly:
a checkpoint must load, a shard folder must have its manifest) and resumes an interrupted
training run from its latest checkpoint.

    python scripts/demo.py [--run-dir runs/demo] [--cache ~/.cache/herd] [--minutes-pretrain 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
HERD = [sys.executable, "-m", "herd"]


@dataclass
class Step:
    name: str
    command: list[str]
    done: Callable[[], bool]
    estimate_s: float
    """Rough wall time on 2 cores, for the overall ETA."""


def has_manifest(folder: Path) -> Callable[[], bool]:
    return lambda: (folder / "manifest.json").is_file()


def checkpoint_loads(run: Path, final_step: int | None = None) -> Callable[[], bool]:
    """A finished training stage: its latest checkpoint loads and (if given) reached final_step."""

    def check() -> bool:
        latest = run / "checkpoints" / "latest"
        if not latest.is_file():
            return False
        ckpt = run / "checkpoints" / latest.read_text().strip()
        try:
            meta = json.loads((ckpt / "meta.json").read_text())
            from train.checkpoint import load_text_model

            load_text_model(ckpt)
        except Exception:  # noqa: BLE001 - anything unreadable means "run the step again"
            return False
        return bool(meta.get("finished")) and (final_step is None or meta.get("step") == final_step)

    return check


def latest_checkpoint(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def build_steps(args: argparse.Namespace) -> list[Step]:
    run, cache = args.run_dir, args.cache
    text_shards, tok = run / "data" / "text", run / "tokenizer"
    chat_shards = run / "data" / "chat"
    pretrain, sft = run / "text_pretrain", run / "text_sft"
    return [
        Step("fetch text corpora", [*HERD, "data", "fetch", "--only", "text", "--cache", str(cache)],
             lambda: (cache / "manifest.json").is_file() and "janeaustenr" in (cache / "manifest.json").read_text(),
             30),
        Step("build text shards", [*HERD, "data", "build", "text", "--out", str(text_shards), "--preset", "tiny",
                                   "--cache", str(cache)], has_manifest(text_shards), 30),
        Step("train tokenizer", [*HERD, "tokenizer", "train", "--input", str(text_shards / "train-*.tar"),
                                 "--vocab-size", "8192", "--out", str(tok)],
             lambda: (tok / "tokenizer.json").is_file(), 40),
        Step("text-pretrain", [*HERD, "train", "text-pretrain", "--config", "configs/tiny/text_pretrain.toml",
                               f"--run.dir={pretrain}", f"--data.shards={text_shards}",
                               f"--data.tokenizer={tok / 'tokenizer.json'}",
                               f"--run.max_minutes={args.minutes_pretrain}", "--resume", "auto"],
             checkpoint_loads(pretrain), args.minutes_pretrain * 60 + 30),
        Step("build chat data", [*HERD, "data", "build", "chat", "--out", str(chat_shards), "--preset", "tiny",
                                 "--cache", str(cache)], has_manifest(chat_shards), 20),
        Step("text-sft", [*HERD, "train", "text-sft", "--config", "configs/tiny/text_sft.toml",
                          f"--run.dir={sft}", f"--data.shards={chat_shards}",
                          f"--model.init={pretrain / 'checkpoints' / 'latest'}", "--resume", "auto"],
             checkpoint_loads(sft), 150),
    ]


def run_pipeline(steps: list[Step]) -> dict[str, float]:
    remaining = sum(s.estimate_s for s in steps)
    timings: dict[str, float] = {}
    start = time.time()
    for i, step in enumerate(steps, 1):
        prefix = f"[{i}/{len(steps)}] {step.name}"
        if step.done():
            print(f"{prefix}: done already, skipped", flush=True)
            remaining -= step.estimate_s
            continue
        print(f"{prefix}: running (overall ETA ~{remaining / 60:.0f} min)\n  $ {shlex.join(step.command)}", flush=True)
        t0 = time.time()
        result = subprocess.run(step.command, cwd=ROOT)
        timings[step.name] = time.time() - t0
        if result.returncode != 0:
            raise SystemExit(f"demo: step '{step.name}' failed (exit {result.returncode}); "
                             f"fix it and re-run `make demo` to resume")
        remaining -= step.estimate_s
        print(f"{prefix}: finished in {timings[step.name]:.0f} s", flush=True)
    print(f"pipeline finished in {(time.time() - start) / 60:.1f} min", flush=True)
    return timings


def sample(run: Path) -> None:
    """Show what the trained models say."""
    pretrain, sft = run / "text_pretrain", run / "text_sft"
    print("\n--- text-pretrain sample ---", flush=True)
    subprocess.run([*HERD, "generate", "--checkpoint", str(latest_checkpoint(pretrain)), "--prompt",
                    "It is a truth universally acknowledged", "--max-new-tokens", "60", "--greedy"],
                   cwd=ROOT, check=True)
    if (sft / "checkpoints" / "latest").is_file():
        for prompt in ("Repeat after me: the cat sat on the mat.", "What does harbour mean?"):
            print("\n--- text-sft chat ---", flush=True)
            subprocess.run([*HERD, "generate", "--chat", "--checkpoint", str(latest_checkpoint(sft)),
                            "--prompt", prompt, "--max-new-tokens", "40", "--greedy"], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("HERD_CACHE", Path.home() / ".cache" / "herd")))
    parser.add_argument("--minutes-pretrain", type=float, default=10.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    run_pipeline(build_steps(args))
    sample(args.run_dir)


if __name__ == "__main__":
    main()
