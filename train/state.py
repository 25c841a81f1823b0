"""Training checkpoints of a run folder: write atomically from every rank, find, prune, resume.

    RUN/checkpoints/step_00000100/
        model.safetensors  full model tensors (rank 0; what eval/chat/export load)
        dcp/               model + optimizer state, Distributed Checkpoint (sharded under FSDP,
                           loads into any world size, or into one process without a group)
        data_state.json    every rank's data-loader state
        rng.pt, rng_rank{r}.pt   RNG states (torch, cuda, python, numpy) per rank
        meta.json          resolved config, stage, step, loop counters, parents, metrics, checksums
        tokenizer.json
    RUN/checkpoints/latest  text file naming the newest complete checkpoint

A checkpoint directory appears only when complete (temp dir + rename), so a run killed in the
middle of a write resumes from the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train import distributed as D
from train.checkpoint import (FORMAT_VERSION, META_FILE, MODEL_FILE, TOKENIZER_FILE, _fsync_dir,
                              read_meta)

LATEST = "latest"
DATA_STATE = "data_state.json"
DCP_DIR = "dcp"
FAULT_ENV = "HERD_FAULT_KILL_IN_CHECKPOINT"
"""Test hook: the step at which the process SIGKILLs itself halfway through a checkpoint write."""


def checkpoints_dir(run: str | Path) -> Path:
    return Path(run) / "checkpoints"


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def find_latest(run: str | Path) -> Path | None:
    """The newest complete checkpoint of a run folder: the `latest` pointer, or failing that the
    highest step directory with a meta.json (a pointer can lag a kill by one rename)."""
    root = checkpoints_dir(run)
    pointer = root / LATEST
    candidates = sorted((p for p in root.glob("step_*") if (p / META_FILE).is_file()), reverse=True)
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / META_FILE).is_file() and (not candidates or named.name >= candidates[0].name):
            return named
    return candidates[0] if candidates else None


def resolve_resume(resume: str, run: str | Path) -> Path | None:
    """--resume auto|none|PATH → the checkpoint to resume from, or None for a fresh start."""
    if resume == "none":
        return None
    if resume == "auto":
        return find_latest(run)
    path = Path(resume)
    if not (path / META_FILE).is_file():
        latest = find_latest(path)  # a run folder is accepted too
        if latest is None:
            raise FileNotFoundError(f"--resume {resume}: not a checkpoint or a run folder with one")
        return latest
    return path


def tensor_checksums(named: dict[str, torch.Tensor]) -> dict[str, str]:
    """sha256 of each tensor's bytes (this rank's shard for DTensors)."""
    out = {}
    for name, t in named.items():
        t = t.to_local() if hasattr(t, "to_local") else t
        data = t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
        out[name] = hashlib.sha256(data.tobytes()).hexdigest()[:16]
    return out


def frozen_tensors(model: nn.Module, extra: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every frozen parameter of the model, plus all parameters and buffers of extra modules."""
    named = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    for prefix, module in extra.items():
        named.update({f"{prefix}.{n}": t for n, t in module.state_dict().items()})
    return named


def verify_frozen(expected: dict[str, str], model: nn.Module, extra: dict[str, nn.Module], where: str) -> None:
    """Raise when any frozen tensor's checksum differs from the one recorded at the start."""
    now = tensor_checksums(frozen_tensors(model, extra))
    changed = [k for k in expected if now.get(k) != expected[k]]
    if changed:
        raise RuntimeError(f"frozen tensor '{changed[0]}' changed {where} "
                           f"({len(changed)} of {len(expected)} frozen tensors differ)")


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(run: str | Path, step: int, *, model: nn.Module, optimizer,
                             loader, meta: dict[str, Any], tokenizer: Path | None,
                             keep_last: int, env: D.DistEnv) -> Path:
    """Collective: every rank calls it. Returns the checkpoint directory."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)
    import torch.distributed.checkpoint as dcp

    root = checkpoints_dir(run)
    final = root / step_name(step)
    tmp = root / f".{final.name}.tmp"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    D.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "assuming single process" without a group
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp / DCP_DIR)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=D.is_fsdp(model),
                                                                cpu_offload=True))
    torch.save(rng_state(), tmp / ("rng.pt" if env.rank == 0 else f"rng_rank{env.rank}.pt"))
    data_states = D.all_gather_objects(loader.state_dict())
    if env.is_main:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in full.items()}, tmp / MODEL_FILE)
        if os.environ.get(FAULT_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die halfway through the write
        (tmp / DATA_STATE).write_text(json.dumps({"world_size": env.world_size, "ranks": data_states}))
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
        (tmp / META_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **meta}, indent=2))
    D.barrier()
    if env.is_main:
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / LATEST)
        _prune(root, keep_last)
    D.barrier()
    return final


def load_training_checkpoint(path: Path, *, model: nn.Module, optimizer, loader,
                             env: D.DistEnv) -> dict[str, Any]:
    """Restore model, optimizer, data position and RNG from `path` (any world size); return meta."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    import torch.distributed.checkpoint as dcp

    meta = read_meta(path)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=path / DCP_DIR)
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
    data = json.loads((path / DATA_STATE).read_text())
    if data["world_size"] == env.world_size:
        loader.load_state_dict(data["ranks"][env.rank])
    else:
        # Loaders whose state is global (positions counted in global batches) resume exactly;
        # others continue from rank 0's position.
        loader.load_state_dict(data["ranks"][0])
    rng_file = path / f"rng_rank{env.rank}.pt"
    set_rng_state(torch.load(rng_file if rng_file.is_file() else path / "rng.pt", weights_only=True))
    return meta


def _prune(root: Path, keep_last: int) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[: max(0, len(steps) - max(1, keep_last))]:
        shutil.rmtree(old, ignore_errors=True)


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


__all__ = ["checkpoints_dir", "step_name", "find_latest", "resolve_resume", "tensor_checksums",
           "frozen_tensors", "verify_frozen", "rng_state", "set_rng_state",
           "save_training_checkpoint", "load_training_checkpoint", "LATEST", "FAULT_ENV"]
