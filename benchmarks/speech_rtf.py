"""Speech-path speed on this machine (issue 7 targets).

1. Real-time factor of the encoder + adapter (compute seconds per audio second; target ≤ 0.02 at
   `tiny` on CPU), with and without the log-mel front end, fp32 and bf16 autocast.
2. herd's Conformer layer (rotary MHSA, padding-safe conv) against `torchaudio.models.Conformer`'s
   layer at the same size, side by side: one layer and the full stack, same padded batch.

    python benchmarks/speech_rtf.py [--preset tiny] [--seconds 10] [--repeats 10] [--threads N] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.speech_adapter import build_speech_adapter  # noqa: E402
from speech.attention import FrameContext  # noqa: E402
from speech.config import create_config  # noqa: E402
from speech.conformer import build_conformer_layer  # noqa: E402
from speech.encoder import build_encoder  # noqa: E402
from speech.features import LogMelFrontEnd  # noqa: E402
from text.config import create_config as text_config  # noqa: E402

RTF_TARGET = 0.02


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_seconds(fn_a, fn_b, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Medians of two functions timed alternately, so load changes on a shared CPU hit both."""
    for _ in range(warmup):
        fn_a(), fn_b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.inference_mode()
def real_time_factor(preset: str, seconds: float, repeats: int) -> list[tuple[str, float]]:
    """(what, compute seconds per audio second) for one utterance of `seconds`, batch 1."""
    cfg = create_config(preset)
    encoder = build_encoder(cfg.encoder).eval()
    lm_dim = text_config(preset if preset in ("tiny", "small") else "8B").dim
    adapter = build_speech_adapter(cfg.adapter, enc_dim=cfg.encoder.dim, lm_dim=lm_dim).eval()
    frontend = LogMelFrontEnd(cfg.features)
    wave = torch.randn(int(seconds * cfg.features.sample_rate)) * 0.1
    feats, lengths = frontend([wave])
    rows = []
    for bf16 in (False, True):
        with autocast(bf16):
            model_only = median_seconds(lambda: adapter(*encoder(feats, lengths)), repeats)
            with_features = median_seconds(lambda: adapter(*encoder(*frontend([wave]))), repeats)
        tag = "bf16" if bf16 else "fp32"
        rows += [(f"encoder+adapter {tag}", model_only / seconds),
                 (f"features+encoder+adapter {tag}", with_features / seconds)]
    return rows


@torch.inference_mode()
def conformer_speed(preset: str, seconds: float, repeats: int,
                    batch: int = 4) -> list[tuple[str, float, float]]:
    """(what, herd ms, torchaudio ms) for one layer and for the full stack on a padded batch."""
    from torchaudio.models import Conformer
    from torchaudio.models.conformer import ConformerLayer as TALayer

    c = create_config(preset).encoder
    T = int(seconds * 1000 / 40)
    x = torch.randn(batch, T, c.dim)
    lengths = torch.linspace(T // 2, T, batch).long()
    herd_layer = build_conformer_layer(c).eval()
    ta_layer = TALayer(c.dim, c.ffn_dim, c.n_heads, c.conv_kernel, dropout=c.dropout).eval()
    pad = torch.arange(T)[None] >= lengths[:, None]
    herd_stack = build_encoder(c).layers.eval()
    herd_bn_stack = build_encoder(dataclasses.replace(c, conv_norm="batch")).layers.eval()
    ta_stack = Conformer(c.dim, c.n_heads, c.ffn_dim, c.n_layers, c.conv_kernel, dropout=c.dropout).eval()

    def herd_one():
        herd_layer(x, FrameContext.build(lengths, T, c.head_dim, c.rope_theta))

    def herd_all(stack=herd_stack):
        ctx = FrameContext.build(lengths, T, c.head_dim, c.rope_theta)
        h = x
        for layer in stack:
            h = layer(h, ctx)

    rows = [("1 layer", *paired_median_seconds(herd_one, lambda: ta_layer(x.transpose(0, 1), pad),
                                               repeats)),
            (f"{c.n_layers} layers", *paired_median_seconds(herd_all, lambda: ta_stack(x, lengths),
                                                            repeats)),
            # the same conv norm as torchaudio: what remains is rotary attention + padding masks
            (f"{c.n_layers} layers, BatchNorm", *paired_median_seconds(
                lambda: herd_all(herd_bn_stack), lambda: ta_stack(x, lengths), repeats))]
    herd_n = sum(p.numel() for p in herd_layer.parameters())
    ta_n = sum(p.numel() for p in ta_layer.parameters())
    print(f"params per layer: herd {herd_n:,}  torchaudio {ta_n:,}")
    return [(what, h * 1000, t * 1000) for what, h, t in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length per utterance")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (1 avoids OpenMP spin-waits on a shared CPU)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if fp32 RTF > {RTF_TARGET}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}, "
          f"{args.seconds:g} s audio, batch 1\n")
    rtf = real_time_factor(args.preset, args.seconds, args.repeats)
    print(f"{'real-time factor':<34}{'RTF':>8}")
    for what, value in rtf:
        print(f"{what:<34}{value:>8.4f}")
    print(f"(target ≤ {RTF_TARGET} for encoder+adapter at tiny)\n")
    rows = conformer_speed(args.preset, args.seconds, args.repeats)
    print(f"{'Conformer forward, batch 4':<30}{'herd ms':>10}{'torchaudio ms':>15}{'herd/ta':>9}")
    for what, h, t in rows:
        print(f"{what:<30}{h:>10.2f}{t:>15.2f}{h / t:>9.2f}")
    fp32 = dict(rtf)["encoder+adapter fp32"]
    return int(args.check and fp32 > RTF_TARGET)


if __name__ == "__main__":
    raise SystemExit(main())
