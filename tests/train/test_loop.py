"""The generic loop in-process on a micro model: outputs of a run, checkpoint layout and
rotation, NaN/inf skipping and abort, OOM report, empty trainable set, frozen-tensor checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from herd.cli import main as herd
from train.config import load_config
from train.stage_configs import PretrainConfig
from train.loop import NonFiniteLossError, train
from train.stages import text_pretrain
from train_helpers import SYNTHETIC


def _config(tmp_path: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, [a.removeprefix("--") for a in SYNTHETIC + list(extra)]
                       + [f"run.dir={tmp_path}"])


def test_pretrain_cli_writes_a_complete_run(tmp_path):
    assert herd(["train", "text-pretrain", *SYNTHETIC, f"--run.dir={tmp_path}", "--train.steps=6",
                 "--checkpoint.every=2", "--checkpoint.keep_last=2", "--train.eval_every=3"]) == 0
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000004", "step_00000006"]
    assert (ckpts / "latest").read_text() == "step_00000006"
    final = ckpts / "step_00000006"
    for name in ("model.safetensors", "meta.json", "data_state.json", "rng.pt", "dcp"):
        assert (final / name).exists(), name
    meta = json.loads((final / "meta.json").read_text())
    assert meta["step"] == 6 and meta["finished"] and meta["stage"] == "text-pretrain"
    assert meta["config"]["train"]["steps"] == 6 and meta["config"]["model"]["dim"] == 64
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert {r["step"] for r in rows if "val_ppl" in r} == {3, 6}
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert list((tmp_path / "tensorboard").glob("events.*"))

    from train.checkpoint import load_text_model

    model = load_text_model(final)  # self-describing: eval/chat rebuild it from meta.json
    assert model.config.dim == 64 and model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 256)


def test_loss_falls_with_grad_accum_and_clipping(tmp_path):
    metrics = train(_config(tmp_path, "--train.steps=30", "--optim.lr=3e-3", "--train.grad_accum=2",
                            "--optim.grad_clip=0.5"), text_pretrain.build)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 0.3, losses
    assert rows[0]["tokens"] == 2 * 4 * 32  # two micro-batches of 4 rows of 32 tokens
    assert metrics["val_loss"] < losses[0]


class _PoisonedUnit:
    """A pretrain unit whose loss is NaN on chosen steps."""

    def __init__(self, unit, bad_calls: set[int]):
        self.__dict__.update(unit.__dict__)
        self._unit, self._bad, self._calls = unit, bad_calls, 0

    def __getattr__(self, name):
        return getattr(self._unit, name)

    def loss(self, model, batch):
        out = self._unit.loss(model, batch)
        self._calls += 1
        if self._calls in self._bad:
            out.loss = out.loss * float("nan")
        return out


def test_nan_steps_are_skipped_and_counted(tmp_path):
    seen = {}

    def build(config, env):
        seen["unit"] = _PoisonedUnit(text_pretrain.build(config, env), {2, 3})
        return seen["unit"]

    metrics = train(_config(tmp_path, "--train.steps=5", "--train.max_bad_steps=3"), build)
    assert metrics["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in seen["unit"].model.parameters())


def test_nan_streak_aborts_with_a_clear_message(tmp_path):
    build = lambda config, env: _PoisonedUnit(text_pretrain.build(config, env), set(range(2, 99)))
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps had a NaN/inf loss"):
        train(_config(tmp_path, "--train.steps=10", "--train.max_bad_steps=3"), build)


def test_oom_names_the_batch_shape(tmp_path):
    class OOMUnit(_PoisonedUnit):
        def loss(self, model, batch):
            raise torch.OutOfMemoryError("CUDA out of memory")

    build = lambda config, env: OOMUnit(text_pretrain.build(config, env), set())
    with pytest.raises(RuntimeError, match=r"out of memory at step 1 on a batch of shape .*'tokens': \(4, 33\)"):
        train(_config(tmp_path, "--train.steps=2"), build)


def test_empty_trainable_set_is_refused(tmp_path):
    def build(config, env):
        unit = text_pretrain.build(config, env)
        unit.model.requires_grad_(False)
        return unit

    with pytest.raises(ValueError, match="trainable set is empty"):
        train(_config(tmp_path, "--train.steps=2"), build)


def test_frozen_tensors_are_verified(tmp_path):
    """A unit that freezes the embeddings keeps them bit-identical; one that lets a frozen tensor
    change (here: in place, behind the optimizer's back) is caught at the next checkpoint."""

    class Freeze(_PoisonedUnit):
        def loss(self, model, batch):
            if self.tamper and self._calls == 2:
                with torch.no_grad():
                    self.model.tok_embeddings.weight.add_(1e-3)
            self._calls += 1
            return self._unit.loss(model, batch)

    def builder(tamper):
        def build(config, env):
            unit = Freeze(text_pretrain.build(config, env), set())
            unit.model.tok_embeddings.requires_grad_(False)
            unit.tamper = tamper
            return unit
        return build

    train(_config(tmp_path / "ok", "--train.steps=3"), builder(False))
    meta = json.loads((tmp_path / "ok/checkpoints/step_00000003/meta.json").read_text())
    assert list(meta["frozen_checksums"]) == ["tok_embeddings.weight"]
    with pytest.raises(RuntimeError, match="frozen tensor 'tok_embeddings.weight' changed by step 3"):
        train(_config(tmp_path / "bad", "--train.steps=3", "--checkpoint.every=2"), builder(True))


def test_fresh_start_refuses_a_run_folder_with_checkpoints(tmp_path):
    train(_config(tmp_path, "--train.steps=1"), text_pretrain.build)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(_config(tmp_path, "--train.steps=2", "--checkpoint.resume=none"), text_pretrain.build)


def test_lr_schedules():
    from train.config import OptimSection
    from train.optim import lr_at

    cos = OptimSection(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, 100, cos) == pytest.approx(0.1) and lr_at(9, 100, cos) == pytest.approx(1.0)
    assert lr_at(10, 100, cos) == pytest.approx(1.0) and lr_at(100, 100, cos) == pytest.approx(0.1)
    lin = OptimSection(lr=1.0, warmup_steps=0, schedule="linear")
    assert lr_at(50, 100, lin) == pytest.approx(0.5) and lr_at(100, 100, lin) == 0.0
    # optim.horizon "minutes": the decay follows the share of the time spent, not the step
    assert lr_at(20, 100, cos, progress=0.5) == pytest.approx(0.55) and lr_at(5, 100, cos, progress=0.9) < 1.0
    assert lr_at(99, 100, cos, progress=0.0) == pytest.approx(1.0) and lr_at(20, 100, cos, progress=1.7) == 0.1


@pytest.mark.parametrize("horizon", ["minutes", "steps"])
def test_a_minutes_horizon_anneals_within_the_time_cap(tmp_path, horizon):
    """With optim.horizon "minutes" a run capped by run.max_minutes ends annealed however many
    steps the machine managed; with "steps" it stops mid-schedule."""
    assert herd(["train", "text-pretrain", *SYNTHETIC, f"--run.dir={tmp_path}", "--train.steps=1000000",
                 "--run.max_minutes=0.04", f"--optim.horizon={horizon}", "--optim.warmup_steps=0",
                 "--optim.lr=1e-3", "--optim.min_lr_ratio=0.1", "--run.log_every=1", "--train.eval_every=0",
                 "--checkpoint.every=0"]) == 0
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]
    assert 5 < len(lrs) < 1000000 and lrs[0] > 0.99e-3
    assert (lrs[-1] < 0.15e-3) if horizon == "minutes" else (lrs[-1] > 0.99e-3)
    meta = json.loads((tmp_path / "checkpoints" / f"step_{len(lrs):08d}" / "meta.json").read_text())
    assert 2.4 <= meta["loop"]["seconds"] < 30


def test_a_resumed_minutes_horizon_spends_only_what_is_left(tmp_path):
    """The loop's wall time is kept in the checkpoint: a run resumed under a time horizon starts
    its decay where it stopped and ends when the budget of both lives is spent."""
    args = ["train", "text-pretrain", *SYNTHETIC, f"--run.dir={tmp_path}", "--run.max_minutes=0.05",
            "--optim.horizon=minutes", "--optim.warmup_steps=0", "--optim.lr=1e-3", "--optim.min_lr_ratio=0.1",
            "--run.log_every=1", "--train.eval_every=0", "--checkpoint.every=0"]
    assert herd([*args, "--train.steps=5"]) == 0
    first = json.loads((tmp_path / "checkpoints" / "step_00000005" / "meta.json").read_text())["loop"]["seconds"]
    assert 0 < first < 3.0
    assert herd([*args, "--train.steps=1000000", "--resume", "auto"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"lr"' in line]
    last = json.loads((tmp_path / "checkpoints" / f"step_{rows[-1]['step']:08d}" / "meta.json").read_text())
    assert 3.0 <= last["loop"]["seconds"] < 3.0 + 2.0  # one budget for both lives, not two
    assert rows[5]["lr"] < rows[0]["lr"] and rows[-1]["lr"] < 0.15e-3


def test_a_minutes_horizon_needs_a_time_cap(tmp_path):
    assert herd(["train", "text-pretrain", *SYNTHETIC, f"--run.dir={tmp_path}", "--optim.horizon=minutes"]) == 2
    assert herd(["train", "text-pretrain", *SYNTHETIC, f"--run.dir={tmp_path}", "--optim.horizon=hours"]) == 2


def test_lr_scales_group_parameters_by_name_pattern():
    from train.config import OptimSection
    from train.optim import build_optimizer

    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(4, 4), "gate": torch.nn.Linear(4, 1),
                                 "head": torch.nn.Linear(4, 2)})
    plain = build_optimizer(model, OptimSection(weight_decay=0.1))
    assert ["lr_scale" in g for g in plain.param_groups] == [False, False]  # matrices, then vectors
    assert [g["weight_decay"] for g in plain.param_groups] == [0.1, 0.0]
    scaled = build_optimizer(model, OptimSection(weight_decay=0.1), {"encoder.": 0.1, "gate.": 10.0})
    by_scale = {}
    for g in scaled.param_groups:
        by_scale.setdefault(g.get("lr_scale", 1.0), set()).update(id(p) for p in g["params"])
    assert by_scale[0.1] == {id(p) for p in model["encoder"].parameters()}
    assert by_scale[10.0] == {id(p) for p in model["gate"].parameters()}
    assert by_scale[1.0] == {id(p) for p in model["head"].parameters()}
