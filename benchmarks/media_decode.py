"""Media decode speed: decord vs PyAV on the same clips (side by side), images/s, audio-seconds/s.

    python benchmarks/media_decode.py [--rounds 5] [--shards DIR_WITH_BUILT_SHARDS]

Clips, images and audio are made in memory (H.264 clips like `herd data build video` writes,
PNGs, FLAC/WAV) unless `--shards` points at a folder holding built `images/`, `video/` and
`speech/` shard sets, whose first samples are then used. decord and PyAV decode exactly the same
bytes to the same sampled frames (`video.frames.read_frames`, backend decord or pyav); they run
alternately in one process so load from other processes hits both alike; each figure is the
median over rounds.
Decoding runs on one torch thread, as it does inside DataLoader workers.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import time
from pathlib import Path

import numpy as np


def synthetic_clip(n: int, side: int, seed: int = 0) -> bytes:
    """A textured square moving across a noisy background (H.264, like the video builder)."""
    from data.build_video import encode_mp4

    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 255, (side, side, 3), dtype=np.uint8) // 4 + 150
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        x = int(i * (side - side // 3) / max(1, n - 1))
        k = side // 3
        frames[i, k: 2 * k, x: x + k] = rng.integers(0, 255, (k, k, 3), dtype=np.uint8)
    return encode_mp4(frames)


def members(folder: Path, ext: str, limit: int) -> list[bytes]:
    out = []
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                if m.name.endswith("." + ext):
                    out.append(tar.extractfile(m).read())
                    if len(out) >= limit:
                        return out
    return out


def timed(fn, items, rounds: int) -> float:
    """Median seconds for one pass of `fn` over `items`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_video(clips: dict[str, list[bytes]], num_frames: int, rounds: int) -> None:
    from video.frames import read_frames

    print(f"\nvideo: frames/s decoding {num_frames} uniformly sampled frames per clip (median of {rounds})")
    print(f"{'clips':28s} {'decord':>10s} {'PyAV':>10s} {'decord/PyAV':>12s}")
    for name, items in clips.items():
        dec, pyav = [], []
        for _ in range(rounds):  # alternate so both see the same background load
            dec.append(timed(lambda b: read_frames(b, num_frames, backend="decord"), items, 1))
            pyav.append(timed(lambda b: read_frames(b, num_frames, backend="pyav"), items, 1))
        fps_d = len(items) * num_frames / statistics.median(dec)
        fps_p = len(items) * num_frames / statistics.median(pyav)
        print(f"{name:28s} {fps_d:10.0f} {fps_p:10.0f} {fps_d / fps_p:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shards", type=Path, default=None, help="folder with built images/ video/ speech/")
    args = parser.parse_args()

    import soundfile as sf
    import torch
    from PIL import Image

    # One intra-op thread, as in DataLoader workers (torch sets it there); with 2 threads on 2 busy
    # cores the resampler's convolution runs ~25x slower from oversubscription.
    torch.set_num_threads(1)

    from data.media import decode_audio, decode_image

    if args.shards:
        clips = {"built clips": members(args.shards / "video", "mp4", 64)}
        pngs = {"built images": members(args.shards / "images", "png", 256)}
        audio = {"built flac 16 kHz": members(args.shards / "speech", "flac", 64)}
    else:
        clips = {"64x64, 8 frames (tiny)": [synthetic_clip(8, 64, s) for s in range(32)],
                 "96x96, 16 frames (full)": [synthetic_clip(16, 96, s) for s in range(16)],
                 "224x224, 64 frames": [synthetic_clip(64, 224, s) for s in range(4)]}
        rng = np.random.default_rng(0)
        pngs = {}
        for side in (64, 128, 224):
            items = []
            for _ in range(64):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8) // 8 * 8).save(buf, format="PNG")
                items.append(buf.getvalue())
            pngs[f"png {side}x{side}"] = items
        audio = {}
        for fmt, sr in (("FLAC", 16000), ("FLAC", 22050), ("WAV", 16000)):
            t = np.arange(sr * 3) / sr
            wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
            buf = io.BytesIO()
            sf.write(buf, wave, sr, format=fmt)
            audio[f"{fmt.lower()} {sr / 1000:g} kHz, 3 s"] = [buf.getvalue()] * 32

    bench_video(clips, 8, args.rounds)

    print(f"\nimages: decode_image (PNG -> RGB PIL), images/s (median of {args.rounds})")
    for name, items in pngs.items():
        print(f"{name:28s} {len(items) / timed(lambda b: decode_image(b, max_pixels=1 << 24), items, args.rounds):10.0f}")

    print(f"\naudio: decode_audio to 16 kHz mono, audio-seconds/s (median of {args.rounds})")
    for name, items in audio.items():
        seconds = sum(sf.info(io.BytesIO(b)).duration for b in items)
        rate = seconds / timed(lambda b: decode_audio(b, target_sr=16000), items, args.rounds)
        print(f"{name:28s} {rate:10.0f}")


if __name__ == "__main__":
    main()
