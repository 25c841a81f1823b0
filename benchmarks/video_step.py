"""Video step benchmark: decode throughput (decord vs PyAV on the same clips), the temporal
aggregator's forward + backward time, and the whole `video-adapter` train step at tiny size —
decode + frame transform + frozen image encoding + aggregation + video cross-attention + LM
forward/backward + AdamW — with the share of each part, once per decoder.

    python benchmarks/video_step.py                       # tiny defaults, ~30 s on 2 cores
    python benchmarks/video_step.py --shards runs/demo/data/video   # the built clips
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


def shard_clips(root: Path, n: int) -> list[bytes]:
    """The mp4 bytes of the first `n` train clips of a built video shard folder."""
    from data.shards import ShardReader, split_shards

    reader = ShardReader(split_shards(root, "train"), shuffle=False, epochs=1, required=("mp4",))
    return [sample["mp4"] for _, sample in zip(range(n), reader)]


def tiny_clips(n: int) -> list[bytes]:
    """Clips like the tiny video build writes: 64×64, 8 frames, a square crossing the frame."""
    from data.build_video import encode_mp4

    rng = np.random.default_rng(0)
    clips = []
    for c in range(n):
        frames = np.full((8, 64, 64, 3), 230, np.uint8) - rng.integers(0, 20, (1, 64, 64, 1), dtype=np.uint8)
        for i in range(8):
            frames[i, 20:40, 4 + 6 * i:24 + 6 * i] = (200, 40 * (c % 5), 60)
        clips.append(encode_mp4(frames))
    return clips


def bench_train_step(clips: list[bytes], backend: str, batch: int, num_frames: int, steps: int) -> dict:
    """Median seconds of one video-adapter step on `batch` clips, split into decode, frame
    transform and the train step proper (forward + backward + AdamW on the video parameters);
    the frozen image encoding inside that step is timed on its own as `encode_s`."""
    from adapters.fusion import build_fusion_model
    from adapters.policies import apply_policy, video_adapter_policy
    from adapters.video_fusion import build_video_fusion_model
    from text.config import create_config as text_config
    from text.model import Transformer
    from video.transform import VideoTransform
    from vision.config import create_config as vision_config

    torch.manual_seed(0)
    lm = Transformer(text_config("tiny"))
    vision = vision_config("tiny")
    model = build_video_fusion_model(build_fusion_model(lm, vision),  # the tiny stage's aggregator
                                     create_config("tiny", dim=lm.config.dim, motion_dim=64,
                                                   patch_grid=vision.tile_size // vision.patch_size))
    params = apply_policy(model, video_adapter_policy(model))
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    transform = VideoTransform(model.vision_encoder.config.tile_size)
    V = lm.config.vocab_size
    tokens = torch.randint(0, V, (batch, 33))
    tokens[:, 5] = V + 1  # <|video|>
    parts: dict[str, list[float]] = {"decode_s": [], "transform_s": [], "encode_s": [], "train_s": []}
    for step in range(steps + 1):  # the first step warms up and is dropped
        chunk = [clips[(step * batch + i) % len(clips)] for i in range(batch)]
        t0 = time.perf_counter()
        frames = [read_frames(c, num_frames, backend=backend) for c in chunk]
        t1 = time.perf_counter()
        pixels = torch.stack([transform(f)[0] for f in frames])
        t2 = time.perf_counter()
        with torch.no_grad():
            model.frame_features(pixels)
        t3 = time.perf_counter()
        logits = model(tokens[:, :-1], video=pixels)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten().clamp(max=V - 1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if step:
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(value)
    out = {k: statistics.median(v) for k, v in parts.items()}
    total = out["decode_s"] + out["transform_s"] + out["train_s"]
    out.update(step_s=total, clips_per_s=batch / total, decode_share=out["decode_s"] / total,
               encode_share=out["encode_s"] / total)
    return out


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
    p.add_argument("--shards", type=Path, help="built video shard folder for the train step (default: synthetic "
                                               "64x64 8-frame clips like the tiny build)")
    p.add_argument("--step-batch", type=int, default=16, help="clips per video-adapter train step")
    p.add_argument("--step-frames", type=int, default=8, help="frames per clip in the train step")
    p.add_argument("--steps", type=int, default=5, help="timed video-adapter train steps per decoder")
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

    clips = shard_clips(args.shards, 4 * args.step_batch) if args.shards else tiny_clips(4 * args.step_batch)
    results["train_step"] = {b: bench_train_step(clips, b, args.step_batch, args.step_frames, args.steps)
                             for b in ("decord", "pyav")}
    print(f"video-adapter step  tiny LM + tiny image path + tiny aggregator, batch {args.step_batch} × "
          f"{args.step_frames} frames ({'built clips' if args.shards else 'synthetic 64x64 clips'}), fp32")
    for backend, r in results["train_step"].items():
        print(f"  {backend:>8}: {r['clips_per_s']:6.1f} clips/s, {1e3 * r['step_s']:7.1f} ms/step = decode "
              f"{1e3 * r['decode_s']:.1f} + transform {1e3 * r['transform_s']:.1f} + train {1e3 * r['train_s']:.1f} ms "
              f"(encode {1e3 * r['encode_s']:.1f} ms); decoding {100 * r['decode_share']:.1f}%, "
              f"frozen encoding {100 * r['encode_share']:.1f}% of the step")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
