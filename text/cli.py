"""Text-model commands: `herd model info`, `herd init`, `herd generate`, `herd tokenizer train`,
`herd export hf`. Heavy imports happen inside the handlers so `herd --help` stays instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="model sizes and FLOPs")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = model_sub.add_parser("info", help="parameter counts and training FLOPs of a preset")
    info.add_argument("--preset", default="tiny", help="text preset: tiny, small, 8B, 70B, 405B")
    info.add_argument("--tokens", type=float, default=None, help="training tokens, for the FLOP count")
    info.add_argument("--seq-len", type=int, default=8192, help="sequence length of the attention term")
    info.add_argument("--vision", metavar="PRESET", default=None,
                      help="also count an image-encoder preset's parameters (vision/config.py: tiny … vit-h-14)")
    info.add_argument("--speech", metavar="PRESET", default=None,
                      help="also count a speech preset's Conformer encoder and adapter (speech/config.py)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_model_info)

    init = subparsers.add_parser("init", help="write a randomly initialised checkpoint")
    init.add_argument("--preset", default="tiny")
    init.add_argument("--out", required=True, type=Path)
    init.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json to include")
    init.add_argument("--vocab-size", type=int, default=None, help="override the preset's vocabulary")
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(handler=_init)

    gen = subparsers.add_parser("generate", help="continue a text prompt with a checkpoint")
    gen.add_argument("--checkpoint", required=True, type=Path,
                     help="a checkpoint directory, a run folder, or its checkpoints/latest")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--greedy", action="store_true", help="argmax decoding (default: sampling)")
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--chat", action="store_true",
                     help="send the prompt as a user turn in the Llama 3 chat format (SFT models)")
    gen.set_defaults(handler=_generate)

    tok = subparsers.add_parser("tokenizer", help="train the byte-level BPE tokenizer")
    tok_sub = tok.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)
    train = tok_sub.add_parser("train", help="train a Llama 3 style BPE tokenizer")
    train.add_argument("--input", required=True, nargs="+", type=Path,
                       help="text files, or directories of webdataset text shards")
    train.add_argument("--vocab-size", type=int, default=8192, help="total ids, 256 special tokens included")
    train.add_argument("--out", required=True, type=Path)
    train.set_defaults(handler=_tokenizer_train)

    export = subparsers.add_parser("export", help="export a checkpoint to another format")
    export_sub = export.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    hf = export_sub.add_parser("hf", help="Hugging Face LlamaForCausalLM directory")
    hf.add_argument("--checkpoint", required=True, type=Path)
    hf.add_argument("--out", required=True, type=Path)
    hf.set_defaults(handler=_export_hf)


def _model_info(args: argparse.Namespace) -> int:
    from text.accounting import count_parameters, training_flops
    from text.config import create_config

    config = create_config(args.preset)
    size = count_parameters(config)
    info = {"preset": args.preset, "parameters": size.total, "non_embedding_parameters": size.non_embedding,
            "config": config.to_dict()}
    if args.tokens:
        info["tokens"] = args.tokens
        info["training_flops"] = training_flops(config, args.tokens, args.seq_len)
    if args.vision:
        info["vision"] = _vision_counts(args.vision)
    if args.speech:
        info["speech"] = _speech_counts(args.speech, config.dim)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"preset            {args.preset}")
    print(f"parameters        {size.total:,}")
    print(f"non-embedding     {size.non_embedding:,}")
    print(f"layers × dim      {config.n_layers} × {config.dim}  (heads {config.n_heads}, kv {config.n_kv_heads}, "
          f"ffn {config.ffn_hidden_dim}, vocab {config.vocab_size:,})")
    if args.tokens:
        print(f"training FLOPs    {info['training_flops']:.3e}  ({args.tokens:.3g} tokens at seq {args.seq_len}; "
              "6·N·D + attention)")
    if args.vision:
        v = info["vision"]
        print(f"vision {args.vision:<10} {v['total']:,} encoder parameters  (ViT {v['local']:,} + gated global "
              f"layers and tile embeddings {v['gated']:,}; features per token {v['output_dim']:,})")
    if args.speech:
        sp = info["speech"]
        print(f"speech {args.speech:<10} {sp['encoder']:,} Conformer encoder parameters  "
              f"(+ adapter into dim {config.dim}: {sp['adapter']:,})")
    return 0


def _vision_counts(preset: str) -> dict[str, int]:
    """Parameter counts of an image-encoder preset, built on the meta device (allocates nothing)."""
    import torch

    from vision.config import create_config
    from vision.encoder import build_encoder, parameter_counts

    config = create_config(preset)
    with torch.device("meta"):
        counts = parameter_counts(build_encoder(config))
    return {**counts, "output_dim": config.output_dim}


def _speech_counts(preset: str, lm_dim: int) -> dict[str, int]:
    """Parameter counts of a speech preset's Conformer encoder and of its adapter into `lm_dim`."""
    import torch

    from adapters.speech_adapter import build_speech_adapter
    from speech.config import create_config
    from speech.encoder import build_encoder

    config = create_config(preset)
    with torch.device("meta"):
        encoder = build_encoder(config.encoder)
        adapter = build_speech_adapter(config.adapter, enc_dim=encoder.dim, lm_dim=lm_dim)
    return {"encoder": sum(p.numel() for p in encoder.parameters()),
            "adapter": sum(p.numel() for p in adapter.parameters())}


def _init(args: argparse.Namespace) -> int:
    import torch

    from text.config import create_config
    from text.model import Transformer
    from train.checkpoint import save_checkpoint, text_model_meta

    overrides = {"vocab_size": args.vocab_size} if args.vocab_size else {}
    config = create_config(args.preset, **overrides)
    torch.manual_seed(args.seed)
    model = Transformer(config)
    if args.tokenizer is not None and not args.tokenizer.is_file():
        raise FileNotFoundError(f"tokenizer not found: {args.tokenizer}")
    save_checkpoint(args.out, model.state_dict(), {"stage": "init", "step": 0, "model": text_model_meta(model),
                                                    "config": {"preset": args.preset, "seed": args.seed}},
                    tokenizer=args.tokenizer)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from text.generate import generate
    from text.tokenizer import load_tokenizer
    from train.checkpoint import load_text_model, resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint)
    model = load_text_model(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    if args.chat:
        from text.chat_format import ChatFormat, Message

        prompt = ChatFormat(tokenizer).encode_dialog([Message("user", args.prompt)], add_generation_prompt=True)
    else:
        prompt = tokenizer.encode(args.prompt, bos=True)
    temperature = 0.0 if args.greedy else args.temperature
    step = tokenizer.stream_decoder(skip_special=True)  # holds back partial UTF-8 sequences

    def stream(_row: int, token: int) -> None:
        sys.stdout.write(step(token))
        sys.stdout.flush()

    sys.stdout.write(f"user: {args.prompt}\nassistant: " if args.chat else args.prompt)
    generate(model, [prompt], max_new_tokens=args.max_new_tokens, temperature=temperature,
             top_p=args.top_p, stop_tokens=tokenizer.stop_tokens, seed=args.seed, on_token=stream)
    sys.stdout.write("\n")
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    from text.tokenizer import train_tokenizer

    path = train_tokenizer(args.input, vocab_size=args.vocab_size, out_dir=args.out)
    print(f"wrote {path}")
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    from text.convert import export_hf
    from train.checkpoint import resolve_checkpoint

    export_hf(resolve_checkpoint(args.checkpoint), args.out)
    print(f"wrote {args.out}")
    return 0
