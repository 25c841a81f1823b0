"""Image-adapter training-step throughput: herd's fused model vs transformers'
`MllamaForConditionalGeneration` at the same tiny configuration (DESIGN `vision-adapter`).

Both models get the same LM (tiny text preset), the same encoder (tiny vision preset), cross-
attention before LM layers [1, 3, 5], the same batch and mask, and the same trainable set
(encoder, projection, cross-attention blocks; LM frozen). herd also trains its 8 new token rows,
which HF cannot train apart from its single 8,192+8-row table: by default that table is frozen
whole (sparing HF the backward pass through the layers below the first cross-attention block);
`--hf-train-embeddings` trains it whole instead, the nearest HF equivalent of herd's trainable
set.

The batch is shaped like the stage's (configs/tiny/vision_adapter.toml: 16 samples of up to 48
tokens): a prompt around the image token, a caption of 6–25 tokens, with the loss on the caption.
HF gets it as Mllama takes it, one row per sample padded to the longest. herd runs it twice: the
same padded rows ("herd padded") and, as the stage does with `vision.pack`, the samples packed up
to `--pack` to a row as separate documents that attend only their own image ("herd packed"). Each
side computes the loss its own way: herd as the stage does (`supervised_loss`: logits at the
caption positions only), HF through `labels=` with -100 elsewhere. A step is forward, loss,
backward and an AdamW update. HF runs with both of its attention implementations (sdpa, eager).
Prints ms/step for fp32 and bf16 autocast and herd's speed-up over the faster HF (target ≥ 1.5×).

    python benchmarks/vision_step.py [--batch 16] [--seq 48] [--pack 4] [--steps 5] [--dtype fp32,bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from adapters.convert_mllama import mllama_config
from adapters.fusion import FusionConfig, ImageSpans, build_fusion_model, image_attendance
from adapters.policies import apply_policy, vision_adapter_policy
from text.config import create_config as text_config
from text.model import Transformer
from train.stages.chat_data import group_documents, pack_rows, pad_rows
from train.stages.text_common import IGNORE, supervised_loss
from vision.config import create_config as vision_config

PROMPT_TOKENS = 22
IMAGE_AT = 5
"""Chat header, prompt and assistant header around the image token. With captions of 6–25 tokens,
a batch of 16 × 48 holds ~26% caption tokens and ~1.3 tokens per real one, as the demo's do.
`<|image|>` sits at IMAGE_AT, after the user header."""


def build_herd(text, vision):
    model = build_fusion_model(Transformer(text), vision, FusionConfig(cross_attention_every=2))
    return model, apply_policy(model, vision_adapter_policy(model))


def build_hf(herd, attention: str, train_embeddings: bool = False):
    """A randomly initialised MllamaForConditionalGeneration of herd's exact shape, with the
    image-adapter trainable set and the `attention` implementation ("sdpa" or "eager")."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    config = mllama_config(herd)
    hf_config = MllamaConfig(**config)
    hf_config._attn_implementation = attention  # read by every sub-model at construction
    model = MllamaForConditionalGeneration(hf_config)
    cross = config["text_config"]["cross_attention_layers"]
    trainable = []
    for name, p in model.named_parameters():
        train = (name.startswith(("model.vision_model.", "model.multi_modal_projector."))
                 or any(name.startswith(f"model.language_model.layers.{i}.") for i in cross)
                 or (train_embeddings and name == "model.language_model.embed_tokens.weight"))
        p.requires_grad_(train)
        if train:
            trainable.append(p)
    return model, trainable


def samples(text, vision, B, T, seed=0):
    """B (tokens, targets) rows as the stage's batcher makes them (prompt with <|image|>, then a
    caption and `<|eot_id|>`; targets IGNORE but on the caption; at most T+1 tokens), and one
    image of random aspect ratio each: images [B, max_tiles, 3, t, t], ratio_ids [B]."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(B):
        n = min(PROMPT_TOKENS + int(torch.randint(6, 26, (1,), generator=g)) + 1, T + 1)
        tokens = torch.randint(3, text.vocab_size, (n,), generator=g).tolist()
        tokens[IMAGE_AT] = text.vocab_size  # <|image|>
        rows.append((tokens, [IGNORE] * (PROMPT_TOKENS - 1) + tokens[PROMPT_TOKENS:]))
    ratio_ids = torch.randint(1, len(vision.aspect_ratios) + 1, (B,), generator=g)
    images = torch.randn(B, vision.max_tiles, 3, vision.tile_size, vision.tile_size, generator=g)
    return rows, images, ratio_ids


def packed_images(images, ratio_ids, groups):
    """Each group's images in order: [R, most in a group, …], ratio id 0 for the empty slots."""
    N = max(len(g) for g in groups)
    pixels = images.new_zeros(len(groups), N, *images.shape[1:])
    ids = ratio_ids.new_zeros(len(groups), N)
    for r, g in enumerate(groups):
        pixels[r, :len(g)], ids[r, :len(g)] = images[g], ratio_ids[g]
    return pixels, ids


def hf_masks(tokens, ratio_ids, vision):
    """HF's cross_attention_mask [B, T, N, tiles] and aspect_ratio_mask [B, N, tiles] for the
    same text→image attendance herd computes."""
    V = int(tokens.max())
    spans = ImageSpans.start(tokens.shape[0], ratio_ids.shape[1], tokens.device)
    attend, _ = image_attendance(tokens, V, spans)
    tiles = torch.tensor([0] + [r * c for r, c in vision.aspect_ratios])[ratio_ids]
    tile_valid = torch.arange(vision.max_tiles) < tiles[..., None]
    return (attend[..., None] & tile_valid[:, None]).long(), tile_valid.long()


def time_interleaved(steps: dict, n: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per step of each callable; the steps alternate so that load
    from other processes on a shared machine hits every contender alike."""
    for step in steps.values():
        step()  # warm-up: allocator, optimiser state
    times = {name: [] for name in steps}
    for _ in range(n):
        for name, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    return {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for name, t in times.items()}


def train_step(loss, params, autocast, device):
    """One step: forward + loss → backward → AdamW, synchronised so wall time is the step's."""
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        with autocast:
            value = loss()
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=48)
    parser.add_argument("--pack", type=int, default=4, help="most samples per packed herd row")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    # One thread by default: on a shared, oversubscribed CPU the OpenMP barriers of a 2-thread
    # run make every small op ~100× slower and the timings meaningless.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hf-train-embeddings", action="store_true",
                        help="train HF's whole embedding table (herd trains its 8 new rows)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    text, vision = text_config("tiny"), vision_config("tiny")
    rows, row_images, row_ratio_ids = samples(text, vision, args.batch, args.seq)
    padded = {**pad_rows(rows, pad_id=0), "images": row_images[:, None], "ratio_ids": row_ratio_ids[:, None]}
    groups = group_documents([len(tokens) for tokens, _ in rows], args.pack)
    packed = {**pack_rows(rows, groups, pad_id=0), **dict(zip(("images", "ratio_ids"),
                                                               packed_images(row_images, row_ratio_ids, groups)))}
    inputs, targets, images, ratio_ids = padded["tokens"][:, :-1], padded["targets"], padded["images"], padded["ratio_ids"]
    labels = torch.full_like(targets, IGNORE)  # IGNORE is HF's -100 too; HF shifts labels by one itself
    labels[:, 1:] = targets[:, :-1]
    cross_mask, ratio_mask = hf_masks(inputs, ratio_ids, vision)
    inputs, targets, labels, images, ratio_ids, cross_mask, ratio_mask = (
        t.to(device) for t in (inputs, targets, labels, images, ratio_ids, cross_mask, ratio_mask))
    packed = {k: v.to(device) for k, v in packed.items()}

    herd, herd_params = build_herd(text, vision)
    hf = {impl: build_hf(herd, impl, args.hf_train_embeddings) for impl in ("sdpa", "eager")}
    herd.to(device)
    for model, _ in hf.values():
        model.to(device).train()
    print(f"vision-adapter step, {args.batch} samples of up to {args.seq} tokens (loss on "
          f"{int((targets != IGNORE).sum())} caption tokens), one image of up to {vision.max_tiles} tiles each, "
          f"{device.type}, {torch.get_num_threads()} threads")
    print(f"  token slots: padded {tuple(inputs.shape)} = {inputs.numel()}, packed "
          f"{tuple(packed['targets'].shape)} = {packed['targets'].numel()} ({len(groups)} rows of ≤ {args.pack})")
    print(f"  trainable parameters: herd {sum(p.numel() for p in herd_params):,}  transformers "
          f"{sum(p.numel() for p in hf['sdpa'][1]):,} (embedding table "
          f"{'trained' if args.hf_train_embeddings else 'frozen'})")
    for dtype in args.dtype.split(","):
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
        steps = {"herd padded": train_step(lambda: supervised_loss(
            lambda at: herd(inputs, images=images, ratio_ids=ratio_ids, logits_at=at), targets).loss,
            herd_params, autocast, device),
            "herd packed": train_step(lambda: supervised_loss(
                lambda at: herd(packed["tokens"][:, :-1], images=packed["images"], ratio_ids=packed["ratio_ids"],
                                doc_ids=packed["doc_ids"][:, :-1], logits_at=at), packed["targets"]).loss,
                herd_params, autocast, device)}
        for impl, (model, params) in hf.items():
            steps[f"hf {impl}"] = train_step(
                lambda model=model: model(input_ids=inputs, pixel_values=images, aspect_ratio_ids=ratio_ids,
                                          aspect_ratio_mask=ratio_mask, cross_attention_mask=cross_mask,
                                          labels=labels, use_cache=False).loss, params, autocast, device)
        times = time_interleaved(steps, args.steps)
        print(f"  {dtype}:")
        for name, (wall, cpu) in times.items():
            print(f"    {name:<12} {wall * 1e3:8.1f} ms/step wall  {cpu * 1e3:8.1f} ms/step CPU  "
                  f"{1 / wall:6.2f} steps/s")
        best = min((t for name, t in times.items() if name.startswith("hf")), key=lambda t: t[0])
        for name in ("herd padded", "herd packed"):
            print(f"    speed-up {name} / faster transformers: {best[0] / times[name][0]:.2f}× wall, "
                  f"{best[1] / times[name][1]:.2f}× CPU (target ≥ 1.5×)")


if __name__ == "__main__":
    main()
