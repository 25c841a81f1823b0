"""Video step benchmark: decode throughput (decord vs PyAV on the same clips) and the temporal
aggregator's forward + backward time. Grows into the full video-adapter train step (decode +
encode + aggregate + cross-attention) once those pieces land.

    python benchmarks/video_step.py                       # tiny defaults, ~10 s on 2 cores
    python benchmarks/video_step.py --clips 16 --clip-frames 240 --size 256x256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from video.config import create_config, list_presets
from video.frames import read_frames
from video.resampler import build_aggregator


def make_clips(root: Path, n_clips: int, n_frames: int, height: int, width: int,
               gop: int) -> list[Path]:
    """Synthetic H.264 clips: a textured background with a moving square (cheap to encode,
    not trivially compressible), a keyframe every `gop` frames."""
    import av

    rng = np.random.default_rng(0)
    paths = []
    for c in range(n_clips):
        path = root / f"clip{c:03d}.mp4"
        background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = gop
            side = max(4, min(height, width) // 6)
            for i in range(n_frames):
                img = np.roll(background, i, axis=1)
                x = (3 * i) % (width - side)
                img[height // 3:height // 3 + side, x:x + side] = (255, 255 * (c % 2), 0)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def bench_decode(paths: list[Path], backend: str, num_frames: int, size: tuple[int, int],
                 num_threads: int) -> float:
    """Clips per second for `read_frames` over all clips (after one warm-up read)."""
    read_frames(paths[0], num_frames, size=size, backend=backend, num_threads=num_threads)
    start = time.perf_counter()
    for path in paths:
        read_frames(path, num_frames, size=size, backend=backend, num_threads=num_threads)
    return len(paths) / (time.perf_counter() - start)


def bench_aggregator(preset: str, batch: int, num_frames: int, tokens: int, reps: int,
                     bf16: bool) -> dict:
    """Median forward + backward seconds of the aggregator on random frame features (fp32, or
    bf16 autocast on the CPU)."""
    torch.manual_seed(0)
    config = create_config(preset)
    model = build_aggregator(config)
    frames = torch.randn(batch, num_frames, tokens, config.dim)
    times = []
    for _ in range(reps + 1):  # the first run warms up and is dropped
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(frames)
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    step = statistics.median(times[1:])
    return {"step_s": step, "clips_per_s": batch / step,
            "params": sum(p.numel() for p in model.parameters()),
            "out_shape": list(out.shape)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=8, help="synthetic clips to decode")
    p.add_argument("--clip-frames", type=int, default=96, help="frames per synthetic clip")
    p.add_argument("--size", default="128x160", help="clip resolution HxW")
    p.add_argument("--gop", type=int, default=50,
                   help="keyframe interval (decord seeks to keyframes; PyAV decodes sequentially)")
    p.add_argument("--num-frames", type=int, default=16, help="frames sampled per clip")
    p.add_argument("--resize", default="64x64", help="frames resized on read to HxW")
    p.add_argument("--threads", type=int, default=1, help="decoder threads")
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--preset", default="tiny", choices=list_presets(), help="aggregator preset")
    p.add_argument("--batch", type=int, default=2, help="clips per aggregator step")
    p.add_argument("--tokens", type=int, default=17, help="image-encoder tokens per frame")
    p.add_argument("--reps", type=int, default=5, help="timed aggregator steps")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    height, width = _hw(args.size)
    resize = _hw(args.resize)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    results: dict = {"torch_threads": torch.get_num_threads(), "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_clips(Path(tmp), args.clips, args.clip_frames, height, width, args.gop)
        decode = {b: bench_decode(paths, b, args.num_frames, resize, args.threads)
                  for b in ("decord", "pyav")}
    results["decode_clips_per_s"] = decode
    results["decord_over_pyav"] = decode["decord"] / decode["pyav"]
    results["aggregator"] = {
        precision: bench_aggregator(args.preset, args.batch, args.num_frames, args.tokens,
                                    args.reps, bf16=precision == "bf16")
        for precision in ("fp32", "bf16")}

    print(f"decode  {args.clips} clips × {args.clip_frames} frames {height}x{width} (GOP {args.gop}) → "
          f"{args.num_frames} frames at {resize[0]}x{resize[1]}, {args.threads} thread(s)")
    print(f"  {'decord':>8}: {decode['decord']:8.1f} clips/s")
    print(f"  {'PyAV':>8}: {decode['pyav']:8.1f} clips/s")
    print(f"  {'ratio':>8}: {results['decord_over_pyav']:8.2f}× (decord / PyAV)")
    agg = results["aggregator"]
    print(f"aggregator  preset {args.preset} ({agg['fp32']['params']:,} params), batch {args.batch} × "
          f"{args.num_frames} frames × {args.tokens} tokens → {tuple(agg['fp32']['out_shape'])}, "
          f"{torch.get_num_threads()} torch thread(s), forward+backward")
    for precision, r in agg.items():
        print(f"  {precision:>8}: {1e3 * r['step_s']:8.1f} ms/step, {r['clips_per_s']:6.1f} clips/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
