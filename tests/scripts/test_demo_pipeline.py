"""scripts/demo.py `run_pipeline`: skipped steps, stale stages that start again, and wall times
that stay one pass per step."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def sleeper(seconds: float, exit_code: int = 0) -> list[str]:
    return [sys.executable, "-c", f"import time, sys; time.sleep({seconds}); sys.exit({exit_code})"]


def test_rerun_of_a_finished_step_times_one_pass_and_a_resumed_step_adds_up(tmp_path):
    demo = demo_module()
    done = {"a": False}
    step_a = demo.Step("text", "a", sleeper(0.3), lambda: done["a"], 1)
    demo.run_pipeline([step_a], tmp_path)
    first = json.loads((tmp_path / "timings.json").read_text())
    assert first["finished"] == ["a"] and 0.3 <= first["steps"]["a"] < 3

    done["a"] = True  # finished: skipped, its time kept
    demo.run_pipeline([step_a], tmp_path)
    assert json.loads((tmp_path / "timings.json").read_text())["steps"]["a"] == first["steps"]["a"]

    done["a"] = False  # its outputs removed: it runs again and its time is this pass alone
    demo.run_pipeline([demo.Step("text", "a", sleeper(0.05), lambda: done["a"], 1)], tmp_path)
    assert json.loads((tmp_path / "timings.json").read_text())["steps"]["a"] < first["steps"]["a"]

    # an interrupted step (here: a failing one) resumes, and its passes add up
    with pytest.raises(SystemExit, match="step 'b' failed"):
        demo.run_pipeline([demo.Step("text", "b", sleeper(0.3, 1), lambda: False, 1)], tmp_path)
    failed = json.loads((tmp_path / "timings.json").read_text())
    assert "b" not in failed["finished"]
    demo.run_pipeline([demo.Step("text", "b", sleeper(0.3), lambda: False, 1)], tmp_path)
    resumed = json.loads((tmp_path / "timings.json").read_text())
    assert resumed["steps"]["b"] >= failed["steps"]["b"] + 0.3 and "b" in resumed["finished"]
    assert resumed["total_s"] == pytest.approx(sum(resumed["steps"].values()))


def fake_run(run: Path, mtime: float) -> None:
    """A training run folder whose latest checkpoint's meta.json was written at `mtime`."""
    (run / "checkpoints" / "step_00000010").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("step_00000010")
    meta = run / "checkpoints" / "step_00000010" / "meta.json"
    meta.write_text("{}")
    os.utime(meta, (mtime, mtime))


def test_a_stage_whose_inputs_are_newer_than_its_checkpoint_starts_again(tmp_path):
    demo = demo_module()
    shards, parent, run = tmp_path / "shards", tmp_path / "parent", tmp_path / "run"
    shards.mkdir()
    (shards / "manifest.json").write_text("{}")
    os.utime(shards / "manifest.json", (1000, 1000))
    fake_run(parent, 2000)
    fake_run(run, 3000)
    assert demo.written_at(shards) == 1000 and demo.written_at(run) == 3000
    assert demo.written_at(tmp_path / "missing") == 0.0
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    step = demo.Step("vision", "adapter", command, lambda: (run / "checkpoints").is_dir(), 1,
                     output=run, inputs=(shards, parent))
    demo.run_pipeline([step], tmp_path)
    assert not marker.exists() and (run / "checkpoints").is_dir()  # up to date: skipped, kept

    config = tmp_path / "stage.toml"  # a file input: its own mtime counts
    config.write_text("[train]\n")
    os.utime(config, (2500, 2500))
    step.inputs = (config, shards, parent)
    assert demo.written_at(config) == 2500 and not step.stale()
    os.utime(config, (3500, 3500))  # the config was edited after the run
    assert step.stale()
    os.utime(config, (2500, 2500))

    os.utime(shards / "manifest.json", (4000, 4000))  # the shards were rebuilt after the run
    assert step.stale()
    # the old run's time, even of passes never marked finished, is not added to the new run's
    (tmp_path / "timings.json").write_text(json.dumps({"steps": {"adapter": 500.0}, "finished": []}))
    demo.run_pipeline([step], tmp_path)
    assert marker.exists() and not run.exists()  # the old run is gone and the stage ran from scratch
    assert json.loads((tmp_path / "timings.json").read_text())["steps"]["adapter"] < 100
    assert not step.stale()  # nothing to compare against until the new run writes a checkpoint
