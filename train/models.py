"""Rebuild any stage's model from its checkpoint (DESIGN "Checkpoints": self-describing).

`meta.json["model"]` is a spec `{"arch": NAME, ...}`; `ARCHS` maps each arch to the function that
builds an empty model from that spec, and `load_model` fills it strictly from model.safetensors.
Every consumer (`herd eval …`, `herd chat`, `herd export hf`, later stages' `model.init`) goes
through here, so a new architecture is one entry below plus its `from_spec`.

    model, meta = load_model("runs/demo/vision_adapter")     # checkpoint dir, run folder or latest
    spec = model_spec(model)                                  # what a stage writes into meta.json
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from train.checkpoint import load_tensors, read_meta, resolve_checkpoint

ARCHS: dict[str, str] = {
    "llama3": "text.model:from_spec",
    "llama3-vision": "adapters.fusion:from_spec",
    "llama3-video": "adapters.video_fusion:from_spec",
    "llama3-speech": "adapters.speech_fusion:from_spec",
    "llama3-multimodal": "adapters.multimodal:from_spec",
    "clip": "vision.clip:from_spec",
    "bestrq": "speech.bestrq:from_spec",
}
"""arch name → "module:function" building an empty (randomly initialised) model from a spec."""


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """An untrained model of the architecture a meta.json `model` spec describes."""
    arch = spec.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; known: {', '.join(ARCHS)}")
    module, _, name = ARCHS[arch].partition(":")
    return getattr(importlib.import_module(module), name)(spec)


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The meta.json `model` entry of a model that knows how to describe itself (`spec()`)."""
    if not hasattr(model, "spec"):
        raise TypeError(f"{type(model).__name__} has no spec(); it cannot be rebuilt from a checkpoint")
    return model.spec()


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode with the checkpoint's tensors loaded strictly, its meta.json)."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if "model" not in meta:
        raise ValueError(f"{path}/meta.json has no 'model' entry; it cannot be rebuilt")
    model = build_from_spec(meta["model"])
    try:
        model.load_state_dict(load_tensors(path), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(f"{path}: tensors do not match its {meta['model']['arch']} spec: "
                         f"{' '.join(first[:2])[:300]}") from None
    return model.to(device).eval(), meta


__all__ = ["ARCHS", "build_from_spec", "model_spec", "load_model"]
