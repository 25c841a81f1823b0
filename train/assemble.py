"""`herd assemble`: one self-describing checkpoint with every component (DESIGN "What users do").

    herd assemble --video runs/demo/video_adapter --speech runs/demo/speech_adapter --out runs/demo/final

The video-adapter checkpoint carries the LM, the image path and the video path; the speech-adapter
checkpoint carries the same frozen LM with the speech path. `adapters.multimodal.assemble` checks
that the two LMs are identical and combines them; the result is what `herd chat`, `herd eval …`
and `train.models.load_model` take, with both parents (path + sha256) in its meta.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("assemble", help="combine the video and speech checkpoints into one model",
                              description="Combine a video-adapter checkpoint (LM + image + video paths) and a "
                                          "speech-adapter checkpoint trained on the same LM into one checkpoint.")
    p.add_argument("--video", required=True, type=Path, help="video-adapter checkpoint or run folder")
    p.add_argument("--speech", required=True, type=Path, help="speech-adapter checkpoint or run folder")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from adapters.multimodal import assemble
    from train.checkpoint import MODEL_FILE, TOKENIZER_FILE, resolve_checkpoint, save_checkpoint, sha256_file
    from train.models import load_model

    video_ckpt, speech_ckpt = resolve_checkpoint(args.video), resolve_checkpoint(args.speech)
    video, _ = load_model(video_ckpt)
    speech, _ = load_model(speech_ckpt)
    for path, model, kind in ((video_ckpt, video, "video_aggregator"), (speech_ckpt, speech, "speech_encoder")):
        if not hasattr(model, kind):
            raise ValueError(f"{path} is a {model.spec()['arch']} checkpoint; --{kind.split('_')[0]} needs a "
                             f"{kind.split('_')[0]}-adapter checkpoint")
    tokenizers = [p / TOKENIZER_FILE for p in (video_ckpt, speech_ckpt)]
    if not all(t.is_file() for t in tokenizers) or sha256_file(tokenizers[0]) != sha256_file(tokenizers[1]):
        raise ValueError(f"{video_ckpt} and {speech_ckpt} do not carry the same tokenizer.json")
    model = assemble(video, speech)
    parents = [{"path": str(p), "sha256": sha256_file(p / MODEL_FILE)} for p in (video_ckpt, speech_ckpt)]
    meta = {"stage": "assemble", "step": 0, "finished": True, "model": model.spec(), "parents": parents}
    save_checkpoint(args.out, model.state_dict(), meta, tokenizer=tokenizers[0])
    n = sum(p.numel() for p in model.parameters())
    print(f"assembled {n:,} parameters (LM, image, video, speech) → {args.out}")
    return 0


__all__ = ["register_commands", "run"]
