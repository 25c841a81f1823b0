"""Typed configs: TOML filling, overrides, one-line errors, --print-config, and the CLI surface."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, from_dict, load_config, to_toml
from train.stage_configs import DPOConfig, PretrainConfig
from train.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
SURFACE = Path(__file__).with_name("cli_surface.txt")


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[optim]\nlr = 1e-3\n[train]\nsteps = 7\n[data]\nsynthetic = true\n')
    config = load_config(PretrainConfig, path, ["optim.lr=5e-4", "--run.dir=/tmp/x", "optim.warmup_steps=3"])
    assert config.optim.lr == 5e-4 and config.train.steps == 7 and config.data.synthetic
    assert config.run.dir == "/tmp/x" and config.optim.warmup_steps == 3
    assert load_config(PretrainConfig, None, ["optim.lr=1"]).optim.lr == 1.0  # int → float


@pytest.mark.parametrize("text, overrides, fragment", [
    ("[optim]\nlrr = 1\n", [], "unknown key 'optim.lrr'"),
    ("[optimizer]\nlr = 1\n", [], "unknown key 'optimizer'"),
    ("", ["train.steps=many"], "'train.steps' must be int"),
    ("", ["optim"], "is not section.key=value"),
    ("[train]\nsteps = 1.5\n", [], "'train.steps' must be int"),
])
def test_errors_are_one_line_naming_the_key(tmp_path, text, overrides, fragment):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, path, overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_print_config_round_trips():
    config = load_config(DPOConfig, None, ["dpo.beta=0.3", "model.init=x"])
    import tomllib

    again = from_dict(DPOConfig, tomllib.loads(to_toml(config)))
    assert again == config and again.dpo.beta == 0.3


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*/text_*.toml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    stage = STAGES[path.stem.replace("_", "-")]
    load_config(stage.config, path)


def cli_surface() -> str:
    """Every `herd train STAGE` option, one per line: changes must be deliberate."""
    import argparse

    from train.cli import add_stage_parsers

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="stage")
    add_stage_parsers(sub)
    lines = []
    for name, p in sub.choices.items():
        for action in p._actions:
            lines += [f"{name} {opt}" for opt in action.option_strings if opt.startswith("--")]
    return "\n".join(sorted(lines)) + "\n"


def test_cli_surface_is_guarded():
    """To change the surface on purpose, regenerate the file and review the diff:
    PYTHONPATH=.:tests/train python -c 'from test_train_config import *; SURFACE.write_text(cli_surface())'
    """
    assert cli_surface() == SURFACE.read_text()


def test_cli_errors(capsys):
    from herd.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "text-pretrain", "--optim.lrr=1"])
    assert exit_.value.code == 2 and "--optim.lrr" in capsys.readouterr().err
    assert main(["train", "text-pretrain", "--train.steps=x"]) == 2
    assert "'train.steps' must be int" in capsys.readouterr().err
    assert main(["train", "text-pretrain", "--print-config", "--optim.lr=0.25"]) == 0
    assert "lr = 0.25" in capsys.readouterr().out
