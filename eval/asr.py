"""`herd eval asr` and `herd transcribe`: greedy transcription with a `speech-adapter` checkpoint
(llama3-spec §5.7), scored by WER and CER (jiwer after the Whisper English normaliser,
eval/asr_metrics.py).

    herd eval asr --checkpoint runs/demo/speech_adapter --shards runs/demo/data/speech --split test \\
        --out runs/demo/eval/asr
    herd eval asr --checkpoint CKPT --manifest my_audio.jsonl --out OUT     # {"audio", "text", …}
    herd transcribe --checkpoint runs/demo/speech_adapter a.wav b.mp3

Audio of any format, rate and channel count is decoded and resampled to 16 kHz mono; audio longer
than `--chunk-seconds` is cut into equal chunks transcribed separately and joined. Writes
OUT/scores.json (overall, and by engine, accent, seen/unseen accent and voice),
OUT/utterances.jsonl (one line per utterance) and OUT/wer_by_group.png.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Iterator

from eval.arguments import add_source_arguments

GROUP_KEYS = ("engine", "accent", "accent_seen", "voice")
"""Utterance fields the scores are broken down by (`accent_seen`: is the accent in training)."""


def register(tasks: argparse._SubParsersAction) -> None:
    p = tasks.add_parser("asr", help="WER/CER of a speech-adapter checkpoint on shards or a JSONL manifest",
                         description="Greedy transcription, WER and CER after Whisper normalisation.")
    add_source_arguments(p, checkpoint="speech-adapter", shards="speech shard folder (manifest.json + .tar)",
                         manifest='{"audio": path, "text": …}', unit="utterances")
    _common_options(p)
    p.set_defaults(handler=run)


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("transcribe", help="print transcripts of audio files",
                              description="Greedy transcripts of audio files with a speech-adapter checkpoint.")
    p.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, mp3, ogg, m4a, …)")
    p.add_argument("--checkpoint", required=True, help="speech-adapter checkpoint dir, run folder or latest")
    _common_options(p)
    p.set_defaults(handler=run_transcribe)


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=16, help="chunks per generation batch")
    p.add_argument("--max-new-tokens", type=int, default=96, help="longest transcript of one chunk, in tokens")
    p.add_argument("--chunk-seconds", type=float, default=20.0, help="longer audio is cut into chunks of at most this")
    p.add_argument("--device", default="cpu", help="cpu or cuda")


# ------------------------------------------------------------------------------------ model + decoding

class Transcriber:
    """A loaded speech checkpoint: 16 kHz waveforms → transcripts, chunked and batched."""

    def __init__(self, checkpoint: str, device: str = "cpu", *, batch_size: int = 16, max_new_tokens: int = 96,
                 chunk_seconds: float = 20.0):
        from speech.features import LogMelFrontEnd
        from speech.transcribe import SpeechPrompt
        from text.tokenizer import load_tokenizer
        from train.checkpoint import resolve_checkpoint
        from train.models import load_model

        self.checkpoint = resolve_checkpoint(checkpoint)
        self.model, meta = load_model(self.checkpoint, device=device)
        if not hasattr(self.model, "attach_speech"):
            raise ValueError(f"{self.checkpoint} holds a {meta['model']['arch']} model that takes no speech; "
                             "ASR needs a speech-adapter checkpoint")
        text = meta.get("speech_prompt") or meta.get("config", {}).get("speech", {}).get("prompt", "")
        self.prompt = SpeechPrompt(load_tokenizer(self.checkpoint), text or "Repeat after me in English:",
                                   vocab_size=self.model.vocab_size)
        self.frontend = LogMelFrontEnd()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.chunk_samples = int(chunk_seconds * self.frontend.config.sample_rate)

    def chunks(self, wave) -> list:
        """A waveform → equal consecutive pieces of at most chunk_seconds (one when it is short)."""
        n = max(1, math.ceil(wave.shape[-1] / self.chunk_samples))
        size = math.ceil(wave.shape[-1] / n)
        return [wave[i * size:(i + 1) * size] for i in range(n)]

    def __call__(self, waves: list) -> list[str]:
        """16 kHz mono waveforms → one transcript each."""
        from speech.transcribe import transcribe

        pieces = [(i, c) for i, w in enumerate(waves) for c in self.chunks(w)]
        order = sorted(range(len(pieces)), key=lambda k: pieces[k][1].shape[-1])  # similar lengths batch well
        texts = [""] * len(pieces)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            feats, lengths = self.frontend([pieces[k][1] for k in batch])
            for k, text in zip(batch, transcribe(self.model, self.prompt, feats, lengths,
                                                 max_new_tokens=self.max_new_tokens)):
                texts[k] = text
        out = [[] for _ in waves]
        for (i, _), text in zip(pieces, texts):
            out[i].append(text)
        return [" ".join(t for t in parts if t) for parts in out]


def load_wave(path: Path):
    """An audio file → 16 kHz mono float32 [samples]; a one-line error naming the file otherwise."""
    from speech.features import load_audio, to_mono

    if not Path(path).is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        wave, rate = load_audio(Path(path))
    except Exception as err:  # noqa: BLE001 - soundfile and FFmpeg raise many types; report one line
        raise ValueError(f"{path}: cannot decode audio ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if wave.numel() == 0:
        raise ValueError(f"{path}: no audio samples")
    return to_mono(wave, rate)


# ------------------------------------------------------------------------------------------- samples

def shard_samples(root: Path, split: str) -> Iterator[dict[str, Any]]:
    """Utterances of `split` in fixed order: {"id", "wave", "text", fields of the sample json}."""
    from data.shards import ShardReader, split_shards
    from train.stages.audio_batches import decode_utterance

    reader = ShardReader(split_shards(root, split), shuffle=False, epochs=1, decode=decode_utterance,
                         required=("flac", "json"))
    for n, s in enumerate(reader):
        yield {**s["info"], "id": s["key"] or f"{split}-{n:07d}", "wave": s["wave"], "text": s["text"]}


def manifest_samples(path: Path) -> Iterator[dict[str, Any]]:
    """Utterances of a JSONL manifest {"audio": path relative to it, "text": reference, …}."""
    from eval.manifest import read_manifest_lines

    for n, record in enumerate(read_manifest_lines(path, required=("audio", "text"), paths=("audio",)), 1):
        yield {**record, "id": record.get("id", f"{path.stem}-{n}"), "wave": load_wave(record["audio"]),
               "audio": str(record["audio"])}


def with_groups(sample: dict[str, Any]) -> dict[str, Any]:
    from data.build_speech import TEST_ONLY_ACCENTS

    if "accent" in sample:
        sample["accent_seen"] = "unseen" if sample["accent"] in TEST_ONLY_ACCENTS else "seen"
    return sample


# ------------------------------------------------------------------------------------------ scoring

def score_groups(samples: list[dict[str, Any]], hyps: list[str]) -> dict[str, dict[str, dict]]:
    """{group key: {value: scores}} for every GROUP_KEYS field the samples carry."""
    from eval.asr_metrics import score_corpus

    out = {}
    for key in GROUP_KEYS:
        values = sorted({str(s[key]) for s in samples if key in s})
        if values:
            out[key] = {v: {**score_corpus([s["text"] for s in samples if str(s.get(key)) == v],
                                           [h for s, h in zip(samples, hyps) if str(s.get(key)) == v]).to_dict(),
                            "n": sum(str(s.get(key)) == v for s in samples)}
                        for v in values}
    return out


def plot_groups(groups: dict[str, dict[str, dict]], path: Path) -> None:
    """One horizontal bar chart of WER per group field."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in groups if groups[k]]
    heights = [max(1.5, 0.28 * len(groups[k]) + 0.8) for k in keys] or [2.0]
    fig, axes = plt.subplots(len(keys) or 1, 1, figsize=(7, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, key in zip(axes[:, 0], keys):
        names = list(groups[key])
        ax.barh(names, [100 * groups[key][n]["wer"] for n in names], color="tab:blue")
        ax.set_title(f"WER by {key}", fontsize=10)
        ax.set_xlabel("WER (%)")
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from eval.asr_metrics import score_corpus, score_utterance

    transcriber = Transcriber(args.checkpoint, args.device, batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens, chunk_seconds=args.chunk_seconds)
    source = manifest_samples(args.manifest) if args.manifest else shard_samples(args.shards, args.split)
    samples = [with_groups(s) for n, s in enumerate(source) if not args.limit or n < args.limit]
    if not samples:
        raise ValueError(f"no utterances to transcribe in {args.manifest or args.shards}")
    started = time.perf_counter()
    hyps = transcriber([s["wave"] for s in samples])
    elapsed = time.perf_counter() - started
    seconds = sum(s["wave"].shape[-1] for s in samples) / transcriber.frontend.config.sample_rate
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    groups = score_groups(samples, hyps)
    overall = score_corpus([s["text"] for s in samples], hyps).to_dict()
    report = {"checkpoint": str(transcriber.checkpoint), "n": len(samples),
              "source": str(args.manifest) if args.manifest else f"{args.shards} [{args.split}]",
              "overall": overall, "groups": groups, "audio_seconds": round(seconds, 2),
              "decode_seconds": round(elapsed, 2), "rtf": round(elapsed / max(seconds, 1e-9), 4)}
    (out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(out / "utterances.jsonl", "w") as f:
        for s, h in zip(samples, hyps):
            row = {k: v for k, v in s.items() if k != "wave"}
            f.write(json.dumps({**row, "hypothesis": h, **score_utterance(s["text"], h).to_dict()},
                               ensure_ascii=False) + "\n")
    plot_groups(groups, out / "wer_by_group.png")
    summary = "  ".join(f"{k}={v['wer']:.3f}" for k, v in groups.get("accent_seen", {}).items())
    print(f"asr: {len(samples)} utterances  WER {overall['wer']:.3f}  CER {overall['cer']:.3f}  {summary}  → {out}")
    return 0


def run_transcribe(args: argparse.Namespace) -> int:
    waves = [load_wave(path) for path in args.files]  # every file is checked before any decoding
    transcriber = Transcriber(args.checkpoint, args.device, batch_size=args.batch_size,
                              max_new_tokens=args.max_new_tokens, chunk_seconds=args.chunk_seconds)
    for path, text in zip(args.files, transcriber(waves)):
        print(f"{path}\t{text}")
    return 0


__all__ = ["register", "register_commands", "Transcriber", "load_wave", "shard_samples", "manifest_samples",
           "score_groups", "plot_groups", "run", "run_transcribe"]
