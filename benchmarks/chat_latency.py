"""Chat latency per turn kind: time to first token and decoding tokens/s of one `herd chat` turn
with text only, an image, a video clip and a speech recording, on a given checkpoint.

    python benchmarks/chat_latency.py --checkpoint runs/demo/final [--rounds 3] [--new-tokens 64]
    python benchmarks/chat_latency.py --checkpoint runs/demo/text_sft --image cat.png --json

Time to first token covers what a user waits for: preparing the file (decode, resize, log-mel),
encoding it, the prompt prefill and the first decoding step. Tokens/s is the decoding rate after
it. Each figure is the median over rounds, a fresh conversation each round (the first round
included: the model is loaded once, before any round). Media kinds the checkpoint has no adapter
for are skipped and said so; without --image/--video/--audio a small synthetic file of each kind
is written to a temp dir (64×48 noise image, 16-frame 64×64 clip, 3 s of 16 kHz tone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from chat.media import MEDIA_KINDS, accepts
from chat.session import ChatSession, Settings

PROMPTS = {"text": "Tell me a fortune.", "image": "What is in this picture?", "video": "What happens in this clip?",
           "audio": ""}


def synthetic_media(root: Path) -> dict[str, Path]:
    import soundfile
    from PIL import Image

    from data.build_video import encode_mp4

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "noise.png")
    frames = np.full((16, 64, 64, 3), 220, np.uint8)
    for i in range(16):
        frames[i, 24:40, 3 * i:3 * i + 16] = (200, 40, 40)
    (root / "clip.mp4").write_bytes(encode_mp4(frames))
    t = np.arange(3 * 16_000) / 16_000
    soundfile.write(root / "tone.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    return {"image": root / "noise.png", "video": root / "clip.mp4", "audio": root / "tone.wav"}


def one_turn(session: ChatSession, kind: str, path: Path | None) -> tuple[float, float, int]:
    """(seconds to first token, decoding tokens/s, tokens) of one fresh turn."""
    session.reset()
    start = time.perf_counter()
    if path is not None:
        session.add_media(kind, path)
    prepared = time.perf_counter() - start
    reply = session.ask(PROMPTS[kind])
    return prepared + reply.first_token_s, reply.tokens_per_s, reply.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    for kind in MEDIA_KINDS:
        parser.add_argument(f"--{kind}", type=Path, default=None, help=f"{kind} file (default: synthetic)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()

    load_start = time.perf_counter()
    # min_new_tokens does not exist in herd's generate: a reply may stop early at <|eot_id|>, so
    # the token count is printed next to each rate.
    session = ChatSession.load(args.checkpoint, settings=Settings(max_new_tokens=args.new_tokens))
    print(f"checkpoint {session.checkpoint}: loaded in {time.perf_counter() - load_start:.2f} s; "
          f"{args.rounds} rounds, ≤ {args.new_tokens} new tokens, greedy")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = synthetic_media(Path(tmp))
        for kind in ("text", *MEDIA_KINDS):
            if kind != "text" and not accepts(session.model, kind):
                print(f"{kind:6s} skipped: this checkpoint has no {kind} adapter")
                continue
            path = None if kind == "text" else (getattr(args, kind) or files[kind])
            runs = [one_turn(session, kind, path) for _ in range(args.rounds)]
            first, rate, tokens = (statistics.median(r[i] for r in runs) for i in range(3))
            results[kind] = {"time_to_first_token_s": round(first, 4), "tokens_per_s": round(rate, 1),
                             "tokens": tokens, "file": str(path) if path else None}
            print(f"{kind:6s} first token {first * 1000:8.1f} ms   decoding {rate:7.1f} tok/s   ({tokens:.0f} tokens)")
    if args.json:
        print(json.dumps({"checkpoint": session.checkpoint, "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    main()
