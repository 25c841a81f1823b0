"""Pieces the three text stages share: tokenizer and LM construction (random or from a parent
checkpoint, with its provenance), shard lookup, and the token-level losses."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from train.checkpoint import META_FILE, MODEL_FILE, TOKENIZER_FILE, load_text_model, sha256_file
from train.config import RunConfig
from train.distributed import DistEnv
from train.unit import StepOutput

IGNORE = -100


def resolve_checkpoint(spec: str) -> Path:
    """A checkpoint dir from a checkpoint dir, a run folder, or a `checkpoints/latest` pointer."""
    from train.state import find_latest

    path = Path(spec)
    if path.is_file() and path.name == "latest":
        return path.parent / path.read_text().strip()
    if (path / META_FILE).is_file():
        return path
    latest = find_latest(path)
    if latest is None:
        raise FileNotFoundError(f"model.init {spec}: no checkpoint there")
    return latest


def tokenizer_file(config: RunConfig) -> Path | None:
    """The tokenizer.json to use: data.tokenizer, else the init checkpoint's, else None."""
    spec = config.data.tokenizer
    if not spec and config.model.init:
        spec = str(resolve_checkpoint(config.model.init))
    if not spec:
        return None
    path = Path(spec)
    path = path / TOKENIZER_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path}")
    return path


def load_tokenizer_for(config: RunConfig):
    from text.tokenizer import load_tokenizer

    path = tokenizer_file(config)
    if path is None:
        raise ValueError("this stage needs a tokenizer: set data.tokenizer or model.init")
    return load_tokenizer(path)


def build_lm(config: RunConfig, env: DistEnv, vocab_size: int | None) -> tuple[nn.Module, list[dict]]:
    """The LM on env.device (fp32, train mode) and its parents for meta.json."""
    from text.config import create_config
    from text.model import Transformer

    if config.model.init:
        ckpt = resolve_checkpoint(config.model.init)
        model = load_text_model(ckpt, device=env.device).train()
        return model, [parent_entry(ckpt)]
    m = config.model
    overrides = {k: getattr(m, k) for k in ("dim", "n_layers", "n_heads", "n_kv_heads", "tie_embeddings")
                 if getattr(m, k)}
    if m.vocab_size or vocab_size:
        overrides["vocab_size"] = m.vocab_size or vocab_size
    model = Transformer(create_config(config.model.preset, **overrides)).to(env.device)
    model.rope.reset_tables(env.device)
    return model, []


def parent_entry(ckpt: Path) -> dict[str, Any]:
    return {"path": str(ckpt), "sha256": sha256_file(ckpt / MODEL_FILE)}


def shard_list(config: RunConfig, split: str) -> list[Path]:
    from data.shards import split_shards

    if not config.data.shards:
        raise ValueError("data.shards is empty (or set data.synthetic=true)")
    return split_shards(Path(config.data.shards), split)


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log p(target) per position [B, T] in fp32; IGNORE targets give 0."""
    safe = targets.clamp(min=0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe[..., None]).squeeze(-1)
    return logp.masked_fill(targets == IGNORE, 0.0)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token CE over the positions whose target is not IGNORE: logits [B, T, V] with
    targets [B, T], or the supervised rows alone, logits [n, V] with targets [n]."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE)


def supervised_loss(logits_at: Callable[[Tensor], Tensor], targets: Tensor) -> StepOutput:
    """The step output of a loss on the supervised tokens only: `logits_at(mask)` runs the model
    for logits at the positions `mask` [B, T] marks (its `logits_at=`), so the vocabulary-wide
    projection skips the prompt and the padding."""
    supervised = targets != IGNORE
    return StepOutput(loss=cross_entropy(logits_at(supervised), targets[supervised]), tokens=targets.numel(),
                      metrics={"supervised_tokens": float(supervised.sum())})


def supervised_batches(batches: Iterable[dict[str, Tensor]], device: torch.device,
                       max_batches: int) -> Iterator[tuple[dict[str, Tensor], int]]:
    """(batch on `device`, its number of supervised tokens) for up to `max_batches` batches whose
    `targets` mark unsupervised positions IGNORE; batches without any are passed over."""
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        n = int((batch["targets"] != IGNORE).sum())
        if n:
            yield batch, n


def masked_val_loss(batches: Iterable[dict[str, Tensor]], logits: Callable[[dict[str, Tensor]], Tensor],
                    device: torch.device, max_batches: int) -> dict[str, float]:
    """{"val_loss": CE averaged over every supervised token} of up to `max_batches` batches whose
    `targets` mark unsupervised positions IGNORE; `logits(batch)` runs the model ({} if none)."""
    total, count = 0.0, 0
    for batch, n in supervised_batches(batches, device, max_batches):
        total += float(cross_entropy(logits(batch), batch["targets"])) * n
        count += n
    return {"val_loss": total / count} if count else {}


def media_val_loss(batches: Iterable[dict[str, Tensor]], logits: Callable[[dict[str, Tensor]], Tensor],
                   swap: Callable[[dict], dict], device: torch.device, max_batches: int,
                   gain_key: str) -> dict[str, float]:
    """`masked_val_loss`, plus `gain_key`: the loss when every sample is given another sample's
    media (`swap(batch)`) minus the real loss, from the same batches read once. Near 0 means an
    adapter has learned the answers' language but does not read its image, clip or audio."""
    real, swapped, count = 0.0, 0.0, 0
    for batch, n in supervised_batches(batches, device, max_batches):
        real += float(cross_entropy(logits(batch), batch["targets"])) * n
        swapped += float(cross_entropy(logits(swap(batch)), batch["targets"])) * n
        count += n
    return {"val_loss": real / count, gain_key: (swapped - real) / count} if count else {}


def scale_branches_from_batch(layers: nn.ModuleList, blocks: dict[int, nn.Module],
                              batches: Iterable[dict[str, Tensor]], logits: Callable[[dict[str, Tensor]], Tensor],
                              device: torch.device) -> None:
    """`adapters.branch_scale.match_branch_scale` on the first of `batches`. Stages call it before
    training; a resumed run then loads its trained weights over it."""
    from adapters.branch_scale import match_branch_scale

    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(iter(batches)).items()}
    match_branch_scale(layers, blocks, lambda: logits(batch))


__all__ = ["IGNORE", "resolve_checkpoint", "tokenizer_file", "load_tokenizer_for", "build_lm", "parent_entry",
           "shard_list", "token_logprobs", "cross_entropy", "supervised_loss", "supervised_batches",
           "masked_val_loss", "media_val_loss", "scale_branches_from_batch"]



PRETRAIN_PROMPTS = ("It is a truth universally acknowledged", "Call me", "The ship")
CHAT_PROMPTS = ("Repeat after me: the river ran past a quiet garden.", "What does garden mean?",
                "Tell me a fortune.")


@torch.no_grad()
def write_samples(model: nn.Module, tokenizer_path: Path | None, path: Path, *, chat: bool,
                  max_new_tokens: int = 48) -> None:
    """Greedy continuations of a few fixed prompts (chat prompts in the chat format) → `path`."""
    if tokenizer_path is None:
        return
    from text.chat_format import ChatFormat
    from text.generate import generate
    from text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    was_training = model.training
    model.eval()
    lines = []
    for prompt in (CHAT_PROMPTS if chat else PRETRAIN_PROMPTS):
        ids = (ChatFormat(tokenizer).encode_dialog([{"role": "user", "content": prompt}], add_generation_prompt=True)
               if chat else tokenizer.encode(prompt, bos=True))
        out = generate(model, [ids], max_new_tokens=max_new_tokens, stop_tokens=tokenizer.stop_tokens)[0]
        lines.append(f"### {prompt}\n{tokenizer.decode(out, skip_special=True).strip()}\n")
    model.train(was_training)
    path.write_text("\n".join(lines))
