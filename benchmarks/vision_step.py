"""Image-adapter training-step throughput: herd's fused model vs transformers'
`MllamaForConditionalGeneration` at the same tiny configuration (DESIGN `vision-adapter`).

Both models get the same LM (tiny text preset), the same encoder (tiny vision preset), cross-
attention before LM layers [1, 3, 5], the same batch and mask, and the same trainable set
(encoder, projection, cross-attention blocks; LM frozen). herd also trains its 8 new token rows,
which HF cannot train apart from its single 8,192+8-row table: by default that table is frozen
whole (sparing HF the backward pass through the layers below the first cross-attention block);
`--hf-train-embeddings` trains it whole instead, the nearest HF equivalent of herd's trainable
set. A step is forward, next-token CE, backward and an AdamW update. Prints ms/step (wall and
process CPU time) for each and the ratio (target ≥ 1.5×).

    python benchmarks/vision_step.py [--batch 4] [--seq 64] [--steps 3] [--dtype fp32|bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from adapters.convert_mllama import mllama_config
from adapters.fusion import FusionConfig, ImageSpans, build_fusion_model, image_attendance
from adapters.policies import apply_policy, vision_adapter_policy
from text.config import create_config as text_config
from text.model import Transformer
from vision.config import create_config as vision_config


def build_herd(text, vision):
    model = build_fusion_model(Transformer(text), vision, FusionConfig(cross_attention_every=2))
    return model, apply_policy(model, vision_adapter_policy(model))


def build_hf(herd, train_embeddings: bool = False):
    """A randomly initialised MllamaForConditionalGeneration of herd's exact shape, with the
    image-adapter trainable set."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    config = mllama_config(herd)
    model = MllamaForConditionalGeneration(MllamaConfig(**config))
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


def batch(text, vision, B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    V = text.vocab_size
    tokens = torch.randint(3, V, (B, T + 1), generator=g)
    tokens[:, 1] = V  # <|begin_of_text|> <|image|> caption…
    ratio_ids = torch.randint(1, len(vision.aspect_ratios) + 1, (B, 1), generator=g)
    images = torch.randn(B, 1, vision.max_tiles, 3, vision.tile_size, vision.tile_size, generator=g)
    return tokens, images, ratio_ids


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


def train_step(forward, params, targets, autocast, device):
    """One step: forward → CE → backward → AdamW, synchronised so wall time is the step's."""
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        with autocast:
            logits = forward()
        F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    # fp32 by default on CPU: without AVX512-BF16/AMX a bf16 CPU matmul is ~10× slower.
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                        help="default: bf16 on CUDA, fp32 on CPU")
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
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    text, vision = text_config("tiny"), vision_config("tiny")
    tokens, images, ratio_ids = batch(text, vision, args.batch, args.seq)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clamp(max=text.vocab_size - 1)
    cross_mask, ratio_mask = hf_masks(inputs, ratio_ids, vision)
    inputs, targets, images, ratio_ids, cross_mask, ratio_mask = (
        t.to(device) for t in (inputs, targets, images, ratio_ids, cross_mask, ratio_mask))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    herd, herd_params = build_herd(text, vision)
    hf, hf_params = build_hf(herd, args.hf_train_embeddings)
    herd.to(device), hf.to(device).train()
    steps = {
        "herd": train_step(lambda: herd(inputs, images=images, ratio_ids=ratio_ids),
                           herd_params, targets, autocast, device),
        "transformers": train_step(
            lambda: hf(input_ids=inputs, pixel_values=images, aspect_ratio_ids=ratio_ids,
                       aspect_ratio_mask=ratio_mask, cross_attention_mask=cross_mask,
                       use_cache=False).logits, hf_params, targets, autocast, device),
    }
    times = time_interleaved(steps, args.steps)
    print(f"vision-adapter step, batch {args.batch} × {args.seq} tokens, one image of up to "
          f"{vision.max_tiles} tiles each, {device.type}, {dtype}, {torch.get_num_threads()} threads")
    print(f"  trainable parameters: herd {sum(p.numel() for p in herd_params):,}  transformers "
          f"{sum(p.numel() for p in hf_params):,} (embedding table "
          f"{'trained' if args.hf_train_embeddings else 'frozen'})")
    for name, (wall, cpu) in times.items():
        print(f"  {name:<12} {wall * 1e3:8.1f} ms/step wall  {cpu * 1e3:8.1f} ms/step CPU  "
              f"{1 / wall:6.2f} steps/s")
    (w_herd, c_herd), (w_hf, c_hf) = times["herd"], times["transformers"]
    print(f"  speed-up herd / transformers: {w_hf / w_herd:.2f}× wall, {c_hf / c_herd:.2f}× CPU "
          f"(target ≥ 1.5×)")


if __name__ == "__main__":
    main()
