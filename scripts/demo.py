"""The main job (`make demo`): real data → shards → every stage at the `tiny` preset → evals →
one multimodal checkpoint → a scripted chat → `runs/demo/report.md` (+ .html).

One readable pipeline of `herd` commands; each step prints the command it runs, so any step can
be re-run alone. Re-running skips finished steps — their outputs are checked, not trusted: a
training stage is done when its latest checkpoint rebuilds through `train.models.load_model` and
says `finished`, an eval when its scores.json is newer than the checkpoint it scored — and resumes
an interrupted training stage from its latest checkpoint. As with make, a training stage whose
inputs (its config file, shards, tokenizer, parent runs) were written after its latest checkpoint
trains again from the start: edit a config, or rebuild the image shards, and everything
downstream of them reruns.

    python scripts/demo.py [--run-dir runs/demo] [--cache ~/.cache/herd] [--only text,vision,…]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
HERD = [sys.executable, "-m", "herd"]
GROUPS = ("text", "vision", "video", "speech", "guard", "final")


@dataclass
class Step:
    group: str
    name: str
    command: list[str]
    done: Callable[[], bool]
    estimate_s: float
    """Rough wall time on 2 cores, for the overall ETA."""
    output: Path | None = None
    """The training run (or checkpoint) the step writes; started afresh when `inputs` are newer."""
    inputs: tuple[Path, ...] = ()
    """What the step reads that can change between runs: its config file, and the data folders,
    tokenizer and runs that earlier steps write."""

    def stale(self) -> bool:
        """Whether the step's output exists but an input was written after it."""
        if self.output is None or not (written := written_at(self.output)):
            return False
        return any(written_at(path) > written for path in self.inputs)


# --- "is this step finished?" -------------------------------------------------------------------

def has_manifest(folder: Path) -> Callable[[], bool]:
    return lambda: (folder / "manifest.json").is_file()


def latest_checkpoint(run: Path) -> Path | None:
    pointer = run / "checkpoints" / "latest"
    return run / "checkpoints" / pointer.read_text().strip() if pointer.is_file() else None


def checkpoint_loads(run: Path) -> Callable[[], bool]:
    """A finished stage: its latest checkpoint says finished and rebuilds with its tensors."""

    def check() -> bool:
        ckpt = latest_checkpoint(run) if (run / "checkpoints").is_dir() else run
        try:
            from train.models import load_model

            _, meta = load_model(ckpt)
        except Exception:  # noqa: BLE001 - anything unreadable means "run the step again"
            return False
        return bool(meta.get("finished", True))

    return check


def written_at(path: Path) -> float:
    """When a file, a data folder (its manifest), or a training run or checkpoint (its latest
    meta.json) was last written; 0.0 when it does not exist yet."""
    if path.is_file():
        return path.stat().st_mtime
    ckpt = latest_checkpoint(path) if (path / "checkpoints").is_dir() else path
    for marker in (path / "manifest.json", ckpt / "meta.json" if ckpt else None):
        if marker is not None and marker.is_file():
            return marker.stat().st_mtime
    return 0.0


def scored_after(out: Path, run: Path) -> Callable[[], bool]:
    """An eval is done when its scores.json is newer than the checkpoint it evaluates."""

    def check() -> bool:
        return written_at(out / "scores.json") > written_at(run) > 0

    return check


# --- the pipeline ---------------------------------------------------------------------------------

def build_steps(args: argparse.Namespace) -> list[Step]:
    run, cache, data = args.run_dir, args.cache, args.run_dir / "data"
    tok = run / "tokenizer"
    ev = run / "eval"

    def training(group: str, stage: str, reads: dict[str, Path], estimate_s: float, *options: str,
                 name: str | None = None, label: str | None = None) -> Step:
        """`herd train STAGE` with configs/tiny/NAME.toml into RUN/NAME (NAME: the stage's by default);
        `reads` maps each option that names an earlier step's output (shards, tokenizer, parent run)
        to that output; the step's staleness check watches those and the config file."""
        name = name or stage.replace("-", "_")
        config = Path("configs") / "tiny" / f"{name}.toml"
        command = [*HERD, "train", stage, "--config", str(config), f"--run.dir={run / name}",
                   "--run.progress=false", *(f"--{option}={path}" for option, path in reads.items()), *options,
                   "--resume", "auto"]
        return Step(group, label or stage, command, checkpoint_loads(run / name), estimate_s,
                    output=run / name, inputs=(ROOT / config, *reads.values()))

    def build(kind: str) -> list[str]:
        return [*HERD, "data", "build", kind, "--out", str(data / kind), "--preset", "tiny", "--cache", str(cache)]

    def evaluate(task: str, stage: str, *extra: str) -> list[str]:
        return [*HERD, "eval", task, "--checkpoint", str(run / stage), "--out", str(ev / task), *extra]

    final = run / "final"
    return [
        # text: pretrain → SFT (llama3-spec §1)
        Step("text", "fetch text corpora", [*HERD, "data", "fetch", "--only", "text", "--cache", str(cache)],
             lambda: (cache / "manifest.json").is_file() and "janeaustenr" in (cache / "manifest.json").read_text(), 30),
        Step("text", "build text shards", build("text"), has_manifest(data / "text"), 30),
        Step("text", "train tokenizer", [*HERD, "tokenizer", "train", "--input", str(data / "text" / "train-*.tar"),
                                         "--vocab-size", "8192", "--out", str(tok)],
             lambda: (tok / "tokenizer.json").is_file(), 40),
        training("text", "text-pretrain", {"data.shards": data / "text", "data.tokenizer": tok / "tokenizer.json"},
                 args.minutes_pretrain * 60 + 30, f"--run.max_minutes={args.minutes_pretrain}"),
        Step("text", "build chat data", build("chat"), has_manifest(data / "chat"), 20),
        training("text", "text-sft", {"data.shards": data / "chat", "model.init": run / "text_pretrain"}, 150),
        Step("text", "eval text", evaluate("text", "text_sft", "--shards", str(data / "text"), "--split", "validation",
                                           "--limit", "200"),
             scored_after(ev / "text", run / "text_sft"), 30),
        # images: CLIP pretraining → cross-attention adapter on the frozen LM (§3, §7)
        Step("vision", "fetch media sources", [*HERD, "data", "fetch", "--only", "images,video,speech",
                                                "--cache", str(cache)],
             lambda: (cache / "manifest.json").is_file() and "espeak" in (cache / "manifest.json").read_text(), 60),
        Step("vision", "build image shards", build("images"), has_manifest(data / "images"), 90),
        training("vision", "vision-clip", {"data.shards": data / "images", "data.tokenizer": tok / "tokenizer.json"},
                 150),
        Step("vision", "probe encoder", evaluate("probe", "vision_clip", "--shards", str(data / "images")),
             scored_after(ev / "probe", run / "vision_clip"), 30),
        training("vision", "vision-adapter", {"data.shards": data / "images", "model.init": run / "text_sft",
                                              "vision.encoder_init": run / "vision_clip"}, 420),
        Step("vision", "eval caption", evaluate("caption", "vision_adapter", "--shards", str(data / "images"),
                                                "--split", "test", "--batch-size", "64", "--max-new-tokens", "32"),
             scored_after(ev / "caption", run / "vision_adapter"), 60),
        # video: temporal aggregator + video cross-attention (§4)
        Step("video", "build video shards", build("video"), has_manifest(data / "video"), 90),
        training("video", "video-adapter", {"data.shards": data / "video", "model.init": run / "vision_adapter"},
                 420),
        Step("video", "eval video", evaluate("video", "video_adapter", "--shards", str(data / "video"),
                                             "--split", "test"),
             scored_after(ev / "video", run / "video_adapter"), 60),
        # speech: BEST-RQ → speech adapter into the frozen LM (§5)
        Step("speech", "build speech shards", build("speech"), has_manifest(data / "speech"), 120),
        training("speech", "speech-bestrq", {"data.shards": data / "speech"}, 240),
        training("speech", "speech-adapter", {"data.shards": data / "speech", "model.init": run / "text_sft",
                                              "speech.encoder_init": run / "speech_bestrq"}, 480),
        Step("speech", "eval asr", evaluate("asr", "speech_adapter", "--shards", str(data / "speech"), "--split", "test"),
             scored_after(ev / "asr", run / "speech_adapter"), 60),
        # safety guard: the LM finetuned as a Llama Guard 3 style classifier
        Step("guard", "build guard data", build("guard"), has_manifest(data / "guard"), 20),
        training("guard", "text-sft", {"data.shards": data / "guard", "model.init": run / "text_sft"}, 150,
                 name="guard_sft", label="guard training"),
        Step("guard", "eval guard", evaluate("guard", "guard_sft", "--shards", str(data / "guard"), "--split", "test"),
             scored_after(ev / "guard", run / "guard_sft"), 30),
        # one checkpoint with every component, then chat with it
        Step("final", "assemble final checkpoint",
             [*HERD, "assemble", "--out", str(final), "--video", str(run / "video_adapter"),
              "--speech", str(run / "speech_adapter")],
             checkpoint_loads(final), 10, output=final, inputs=(run / "video_adapter", run / "speech_adapter")),
    ]


def run_pipeline(steps: list[Step], run_dir: Path) -> dict[str, float]:
    remaining = sum(s.estimate_s for s in steps)
    timings_file = run_dir / "timings.json"
    saved = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    # An interrupted step adds up its passes; a step that runs again after it finished (its outputs
    # were removed) or after its inputs changed starts from zero, so each time is one whole run.
    timings, finished = saved.get("steps", {}), set(saved.get("finished", []))
    start = time.time()
    for i, step in enumerate(steps, 1):
        prefix = f"[{i}/{len(steps)} {step.group}] {step.name}"
        if step.stale():
            print(f"{prefix}: its inputs changed after {step.output} was written: starting it again", flush=True)
            shutil.rmtree(step.output)
            timings.pop(step.name, None)  # the old run's passes, finished or not, no longer count
        if step.done():
            print(f"{prefix}: done already, skipped", flush=True)
            remaining -= step.estimate_s
            continue
        print(f"{prefix}: running (overall ETA ~{remaining / 60:.0f} min)\n  $ {shlex.join(step.command)}",
              flush=True)
        before = 0.0 if step.name in finished else timings.get(step.name, 0.0)
        finished.discard(step.name)
        t0 = time.time()
        result = subprocess.run(step.command, cwd=ROOT)
        timings[step.name] = before + time.time() - t0
        if result.returncode == 0:
            finished.add(step.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        timings_file.write_text(json.dumps({"steps": timings, "total_s": sum(timings.values()),
                                            "finished": sorted(finished)}, indent=2))
        if result.returncode != 0:
            raise SystemExit(f"demo: step '{step.name}' failed (exit {result.returncode}); "
                             f"fix it and re-run `make demo` to resume")
        remaining -= step.estimate_s
        print(f"{prefix}: finished in {time.time() - t0:.0f} s", flush=True)
    print(f"pipeline finished in {(time.time() - start) / 60:.1f} min", flush=True)
    return timings


# --- the scripted chat ----------------------------------------------------------------------------

CHAT_TURNS = (("image", "images", "png", "scene", "Describe the image."),
              ("video", "video", "mp4", None, "Describe the motion."),
              ("audio", "speech", "flac", None, "Repeat after me in English:"),
              (None, None, None, None, "What does garden mean?"))
"""(media flag, shard folder, file key, required json source, prompt) of each turn: held-out test
samples of each kind (a compositional scene for the image)."""


def first_test_sample(shards: Path, key: str, out_dir: Path, source: str | None = None) -> tuple[Path, str]:
    """Write the first test-split sample (of `source`, if given)'s media file; return (path, reference)."""
    from data.shards import ShardReader, split_shards

    reader = ShardReader(split_shards(shards, "test"), shuffle=False, epochs=1)
    sample, meta = next((s, m) for s in reader for m in [json.loads(s["json"])]
                        if source is None or m.get("source") == source)
    path = out_dir / f"{Path(sample['__key__']).name}.{key}"
    path.write_bytes(sample[key])
    reference = meta.get("text") or (meta.get("captions") or [""])[0]
    return path, reference


def scripted_chat(run: Path) -> None:
    """One-shot `herd chat` turns with `final` on held-out media; saved to chat/transcript.json."""
    out = run / "chat"
    (out / "media").mkdir(parents=True, exist_ok=True)
    turns = []
    for flag, folder, key, source, prompt in CHAT_TURNS:
        command = [*HERD, "chat", "--checkpoint", str(run / "final"), "--prompt", prompt, "--json",
                   "--max-new-tokens", "40"]
        turn = {"prompt": prompt, "media": flag}
        if flag is not None:
            turn["path"], turn["expected"] = first_test_sample(run / "data" / folder, key, out / "media", source)
            command += [f"--{flag}", str(turn["path"])]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            turn["answer"] = f"(chat failed: {result.stderr.strip().splitlines()[-1:]})"
        else:
            reply = json.loads(result.stdout)
            turn.update(answer=reply.get("answer", ""), timing={k: v for k, v in reply.items() if k != "answer"})
        turns.append({k: str(v) if isinstance(v, Path) else v for k, v in turn.items()})
        print(f"\nuser{f' [{flag}]' if flag else ''}: {prompt}\nherd: {turn['answer']}"
              + (f"\n(reference: {turn['expected']})" if turn.get("expected") else ""), flush=True)
    (out / "transcript.json").write_text(json.dumps({"checkpoint": str(run / "final"), "turns": turns}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("HERD_CACHE", Path.home() / ".cache" / "herd")))
    parser.add_argument("--minutes-pretrain", type=float, default=9.0)
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    groups = set(args.only.split(","))
    run_pipeline([s for s in build_steps(args) if s.group in groups], args.run_dir)
    if "final" in groups:
        scripted_chat(args.run_dir)
    from eval.report import write_report

    print(f"report → {write_report(args.run_dir)}", flush=True)


if __name__ == "__main__":
    main()
