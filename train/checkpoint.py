"""Checkpoints: one directory per step, written atomically (DESIGN.md "Checkpoints").

    CKPT/
      model.safetensors   the stage's own tensors (strict key set)
      meta.json           format, stage, step, model spec, resolved config, parents, metrics
      tokenizer.json      the tokenizer the model was trained with (self-describing)
      optim.pt, data_state.json, rng.pt   training state, when the loop writes them

`meta.json["model"]` = {"arch": "llama3", "config": TextConfig as a dict} is what rebuilds the
model; everything loads with safetensors / `weights_only=True`, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from data.debian import sha256_file  # re-exported: parents in meta.json carry their sha256

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    tokenizer: str | Path | None = None,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically: everything goes to a temp dir, then one rename.

    extra_files: name → object; `.json` names are written as JSON, others with `torch.save`.
    A crash at any point leaves either the old directory or the complete new one, never a mix.
    """
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / MODEL_FILE)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
        for name, obj in (extra_files or {}).items():
            if name.endswith(".json"):
                (tmp / name).write_text(json.dumps(obj, indent=2))
            else:
                torch.save(obj, tmp / name)
        meta = {"format": FORMAT_VERSION, **meta}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, tmp_name: str | None = None) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on success fsync it and rename it to `path`.

    A crash at any point leaves either the old directory or the complete new one, never a mix.
    tmp_name fixes the temp name (several ranks writing into one directory); a stale one left by a
    killed run is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp_name is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        tmp = path.parent / tmp_name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
        _fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from what a user is likely to pass: the directory itself, a run's
    `checkpoints/latest` pointer file, a run folder or its `checkpoints/` folder."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if path.is_file() and path.name == "latest":
        return path.parent / path.read_text().strip()
    for root in (path / "checkpoints", path):
        if (root / "latest").is_file():
            return root / (root / "latest").read_text().strip()
    raise FileNotFoundError(f"{path} is not a herd checkpoint, a run folder or a `latest` pointer")


def read_meta(path: str | Path) -> dict[str, Any]:
    """meta.json of a checkpoint directory, with a one-line error when it is not one."""
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a herd checkpoint (no {META_FILE})")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file}: corrupt JSON ({err.msg} at line {err.lineno})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_file}: unsupported checkpoint format {meta.get('format')!r}")
    return meta


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    model_file = Path(path) / MODEL_FILE
    if not model_file.is_file():
        raise FileNotFoundError(f"{path} has no {MODEL_FILE}")
    return load_file(model_file)


def load_text_model(path: str | Path, *, device: str | torch.device = "cpu"):
    """Rebuild the Llama 3 LM of a checkpoint from its meta.json and load its tensors strictly."""
    from text.config import TextConfig
    from text.model import Transformer

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    spec = meta.get("model", {})
    if spec.get("arch") != "llama3":
        raise ValueError(f"{path}: expected a llama3 text model, found {spec.get('arch')!r}")
    config = TextConfig.from_dict(spec["config"])
    with torch.device("meta"):
        model = Transformer(config)
    model.load_state_dict(load_tensors(path), strict=True, assign=True)
    model.rope.reset_tables()
    return model.to(device).eval()


def text_model_meta(model) -> dict[str, Any]:
    """The `model` entry of meta.json that `load_text_model` rebuilds from."""
    return model.spec()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot store {type(obj).__name__} in meta.json")


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())


__all__ = ["save_checkpoint", "atomic_directory", "read_meta", "load_tensors", "load_text_model", "text_model_meta",
           "sha256_file", "MODEL_FILE", "META_FILE", "TOKENIZER_FILE", "FORMAT_VERSION"]
