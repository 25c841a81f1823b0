"""fp32 against bf16 autocast for each training stage of `make demo`, side by side on this machine.

Each stage runs a short leg of its demo command twice, `--train.dtype=fp32` then `bf16`, on the
demo's data and parent checkpoints (run `make demo` first), and the script prints tokens/s of
each and their ratio. Why: "auto" picks bf16 wherever the CPU has AVX512/AMX, but at `tiny` the
casts cost more than the bf16 matmuls save in most stages; the configs under configs/tiny/ set
`train.dtype` from these figures.

    python benchmarks/stage_dtype.py                       # every stage, ~10 min on 2 cores
    python benchmarks/stage_dtype.py --stages vision-adapter,text-sft
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = {"text-pretrain": 60, "text-sft": 60, "vision-clip": 40, "vision-adapter": 80, "video-adapter": 60,
         "speech-bestrq": 60, "speech-adapter": 60, "guard training": 40}
"""Steps of each leg: enough for three logged windows after the first."""


def demo_steps(run_dir: Path, cache: Path):
    """The demo pipeline's steps (scripts/demo.py), as `make demo` would run them."""
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = demo
    spec.loader.exec_module(demo)
    return demo.build_steps(argparse.Namespace(run_dir=run_dir, cache=cache, minutes_pretrain=9.0))


def tokens_per_s(command: list[str], out: Path, steps: int, dtype: str) -> float:
    """Mean tokens/s of the last three logged windows of a short leg of a stage's `command`."""
    keep = [c for c in command
            if c not in ("--resume", "auto") and not c.startswith(("--run.dir=", "--run.max_minutes"))]
    leg = [*keep, f"--run.dir={out}", f"--train.steps={steps}", "--train.eval_every=0", "--checkpoint.every=0",
           "--run.log_every=10", f"--train.dtype={dtype}"]
    result = subprocess.run(leg, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(leg[3:5])} failed: {result.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"tokens_per_s"' in line]
    return sum(r["tokens_per_s"] for r in rows[-3:]) / len(rows[-3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo", help="a finished `make demo` run")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "herd")
    parser.add_argument("--stages", default=",".join(STEPS), help="comma-separated demo step names")
    args = parser.parse_args()
    if not (args.run_dir / "timings.json").is_file():
        print(f"stage_dtype: skipped, no finished demo run in {args.run_dir} (run `make demo` first)")
        return
    wanted = args.stages.split(",")
    import torch

    print(f"train.dtype fp32 vs bf16 autocast per demo stage; CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for step in demo_steps(args.run_dir.resolve(), args.cache):
            if step.name not in wanted or step.output is None:
                continue
            speed = {}
            for dtype in ("fp32", "bf16"):
                out = Path(tmp) / f"{step.output.name}_{dtype}"
                speed[dtype] = tokens_per_s(step.command, out, STEPS[step.name], dtype)
                shutil.rmtree(out)
            print(f"  {step.name:<16} fp32 {speed['fp32']:8.0f} tok/s   bf16 {speed['bf16']:8.0f} tok/s   "
                  f"fp32/bf16 {speed['fp32'] / speed['bf16']:.2f}×", flush=True)


if __name__ == "__main__":
    main()
