"""Typed run configuration for every training stage (STYLE.md points 3 and 11).

A stage's config is a tree of keyword-only dataclasses with a docstring per field. A TOML file
fills it (`[optim]` → `RunConfig.optim` …), `--section.key=value` overrides single fields, unknown
keys are errors that name the key and the file, and `to_dict()` is what goes into every
checkpoint's meta.json. This module imports nothing heavy: the CLI builds its options from it.

    config = load_config(PretrainConfig, "configs/tiny/text_pretrain.toml", ["optim.lr=1e-3"])

The sections every stage shares live here; each stage's own config (`RunConfig` plus its section)
is in `train/stage_configs.py`.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad config file or override; the message is one line naming the key."""


@dataclass(kw_only=True)
class RunSection:
    """The run folder and process-wide settings."""

    dir: str = "runs/train"
    """Run folder: checkpoints/, metrics.jsonl, tensorboard/, loss.png, config.toml."""
    seed: int = 0
    """Seeds model init and every random choice of the loop."""
    device: str = "auto"
    """cuda, cpu or auto (cuda when available)."""
    log_every: int = 10
    """Write metrics every this many steps."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0)."""
    max_minutes: float = 0.0
    """Stop (with a final checkpoint) after this much wall time; 0 = run all train.steps."""


@dataclass(kw_only=True)
class ModelSection:
    """Which network the stage trains and how it is executed."""

    preset: str = "tiny"
    """Text-model preset (tiny, small, 8B, 70B, 405B); ignored when init is set."""
    vocab_size: int = 0
    """Embedding rows; 0 = the tokenizer's size (or the preset's without a tokenizer)."""
    dim: int = 0
    """Override the preset's model width (0 = the preset's); for ablations and tiny tests."""
    n_layers: int = 0
    """Override the preset's number of blocks (0 = the preset's)."""
    n_heads: int = 0
    """Override the preset's query heads (0 = the preset's)."""
    n_kv_heads: int = 0
    """Override the preset's key/value heads (0 = the preset's)."""
    tie_embeddings: bool = False
    """One table for input embeddings and output projection, as Llama 3.2 1B/3B (the preset's
    otherwise); small LMs learn in-context copying far sooner with it (train/copy_curriculum.py)."""
    init: str = ""
    """Checkpoint to start from (SFT from pretrain, DPO from SFT): a checkpoint dir, a run folder or
    its checkpoints/latest pointer; empty = random init."""
    activation_checkpointing: bool = False
    """Recompute each Transformer block in the backward pass (saves memory, costs ~1/3 compute)."""
    compile: bool = False
    """torch.compile each Transformer block."""


@dataclass(kw_only=True)
class DataSection:
    """Where batches come from."""

    shards: str = ""
    """Shard folder (webdataset .tar + manifest.json); empty with synthetic=true."""
    train_split: str = "train"
    """Split of `shards` to train on."""
    val_split: str = "validation"
    """Split used for validation (the held-out novel for pretraining); empty = no validation."""
    tokenizer: str = ""
    """tokenizer.json (or a dir holding one); empty = the init checkpoint's."""
    synthetic: bool = False
    """Use deterministic synthetic token sequences instead of shards (loop tests, benchmarks)."""
    seq_len: int = 256
    """Tokens per training row (packed text) or the longest dialogue kept (SFT/DPO)."""
    batch_size: int = 8
    """Rows per micro-batch on each rank; global batch = batch_size × grad_accum × world size."""
    num_workers: int = 0
    """Data-loader worker processes per rank."""


@dataclass(kw_only=True)
class OptimSection:
    """AdamW and its learning-rate schedule (llama3-spec §1.3)."""

    lr: float = 3e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final LR as a fraction of the peak (cosine); linear decays to zero."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to the peak over this many optimizer steps."""
    schedule: str = "cosine"
    """cosine (to min_lr_ratio·lr), linear (to 0, the paper's annealing) or constant."""
    horizon: str = "steps"
    """What the decay runs over: "steps" (train.steps) or "minutes" (run.max_minutes of wall time,
    so a time-capped run anneals fully however fast the machine is, as budgeted "cramming" runs
    do; its LR then depends on the clock, and the steps reached are logged)."""
    weight_decay: float = 0.1
    """Decoupled weight decay on matrices (norm weights and embeddings are not decayed)."""
    beta1: float = 0.9
    """Adam β1."""
    beta2: float = 0.95
    """Adam β2."""
    eps: float = 1e-8
    """Adam ε."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping)."""


@dataclass(kw_only=True)
class TrainSection:
    """How the steps run."""

    steps: int = 100
    """Optimizer steps to run in total (a resumed run continues up to this)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    dtype: str = "auto"
    """Autocast dtype for forward/backward: bf16, fp32, or auto = bf16 on GPUs and on CPUs with
    native bf16 (AVX512-BF16/AMX), else fp32. Master weights are always fp32."""
    eval_every: int = 0
    """Validate every this many steps (0 = only at the end)."""
    eval_batches: int = 8
    """Validation batches per evaluation (per rank)."""
    max_bad_steps: int = 5
    """Abort after this many consecutive steps with a NaN/inf loss or gradient."""


@dataclass(kw_only=True)
class CheckpointSection:
    """When and how checkpoints are written (DESIGN.md "Checkpoints")."""

    every: int = 0
    """Write a checkpoint every this many steps (0 = only at the end)."""
    keep_last: int = 3
    """Keep this many step checkpoints (older ones are deleted)."""
    resume: str = "auto"
    """auto (latest in out_dir if any), none, or a checkpoint directory."""


@dataclass(kw_only=True)
class DistSection:
    """Multi-process training under torchrun."""

    strategy: str = "ddp"
    """ddp (replicate) or fsdp (FSDP2 fully_shard, Distributed Checkpoint)."""
    backend: str = "auto"
    """Process-group backend: nccl on GPUs, gloo on CPU (auto), or given explicitly."""


@dataclass(kw_only=True)
class RunConfig:
    """The sections every stage shares."""

    run: RunSection = field(default_factory=RunSection)
    """The run folder and process settings."""
    model: ModelSection = field(default_factory=ModelSection)
    """The network."""
    data: DataSection = field(default_factory=DataSection)
    """The batches."""
    optim: OptimSection = field(default_factory=OptimSection)
    """The optimizer and LR schedule."""
    train: TrainSection = field(default_factory=TrainSection)
    """The loop."""
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    """Checkpointing and resume."""
    dist: DistSection = field(default_factory=DistSection)
    """Distributed execution."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Filling, overriding, printing


def from_dict(cls: type[C], values: dict[str, Any], *, where: str = "config") -> C:
    """Build dataclass `cls` from nested dicts; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where != "config" else key
        if key not in names:
            raise ConfigError(f"unknown key '{path}' (known: {', '.join(sorted(names))})")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"'{path}' must be a table, got {value!r}")
            kwargs[key] = from_dict(kind, value, where=path)
        else:
            kwargs[key] = _coerce(kind, value, path)
    return cls(**kwargs)


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """`cls` filled from the TOML file at `path`, then `section.key=value` overrides."""
    values: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from None
    try:
        for item in overrides:
            key, sep, raw = item.removeprefix("--").partition("=")
            if not sep:
                raise ConfigError(f"override '{item}' is not section.key=value")
            _set_path(values, key.split("."), parse_value(raw))
        return from_dict(cls, values, where=where)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def parse_value(raw: str) -> Any:
    """A TOML literal (1e-3, true, [1, 2], "x") or, failing that, the bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def to_toml(config: Any) -> str:
    """The resolved config as TOML text (what `--print-config` prints)."""
    lines: list[str] = []
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        lines.append(f"[{f.name}]")
        for g in dataclasses.fields(section):
            lines.append(f"{g.name} = {_toml_literal(getattr(section, g.name))}")
        lines.append("")
    return "\n".join(lines)


def flat_fields(cls: type) -> list[tuple[str, type, str]]:
    """(section.key, type, docstring) for every leaf field: what the CLI turns into options."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = hints[f.name]
        docs = field_docs(section)
        for key, kind in typing.get_type_hints(section).items():
            out.append((f"{f.name}.{key}", kind, docs.get(key, "")))
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Field docstrings (the string literal right after each field) from the class source."""
    import ast
    import inspect

    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)):
            docs[node.target.id] = str(nxt.value.value).strip()
    return docs


def _set_path(values: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        values = values.setdefault(key, {})
        if not isinstance(values, dict):
            raise ConfigError(f"'{'.'.join(keys)}': '{key}' is not a section")
    values[keys[-1]] = value


def _coerce(kind: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(a for a in options if a is not type(None))
        origin = typing.get_origin(kind)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"'{path}' must be a list, got {value!r}")
        (item,) = typing.get_args(kind) or (Any,)
        return [_coerce(item, v, path) for v in value]
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and not isinstance(value, str):
        return str(value)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"'{path}' must be {kind.__name__}, got {value!r}")
    return value


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


__all__ = ["ConfigError", "RunConfig", "RunSection", "ModelSection", "DataSection", "OptimSection",
           "TrainSection", "CheckpointSection", "DistSection", "from_dict", "load_config", "parse_value",
           "to_toml", "flat_fields", "field_docs"]
