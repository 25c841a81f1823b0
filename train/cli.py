"""`herd train STAGE` and `python -m train STAGE` (what torchrun launches).

Every option comes from the stage's typed config (STYLE.md point 11): `--section.key=value` for
each field, `--config FILE` for the TOML that fills them first, `--print-config` to show the
resolved config, `--resume auto|none|PATH`. Nothing heavy is imported until a handler runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from train.stages import STAGES

_PREFIX = "cfg:"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a stage (text-pretrain, text-sft, text-dpo, …)",
                                   description="Train one stage; options come from its typed config.")
    add_stage_parsers(parser.add_subparsers(dest="stage", metavar="STAGE", required=True))
    from train.assemble import register_commands
    from train.rs import register_commands as register_rs

    register_commands(subparsers)
    register_rs(subparsers)


def add_stage_parsers(stages: argparse._SubParsersAction) -> None:
    from train.config import flat_fields

    for stage in STAGES.values():
        doc = (stage.config.__doc__ or "").strip().splitlines()[0].split("`: ", 1)[-1]
        p = stages.add_parser(stage.name, help=doc, description=doc,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--config", type=Path, default=None, help="TOML file filling the config")
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("--resume", default=None, metavar="auto|none|PATH",
                       help="same as --checkpoint.resume")
        group = p.add_argument_group("config fields (override the TOML)")
        for key, kind, help_text in flat_fields(stage.config):
            group.add_argument(f"--{key}", dest=_PREFIX + key, default=argparse.SUPPRESS,
                               metavar=_type_name(kind), help=help_text.replace("%", "%%"))
        p.set_defaults(handler=run_stage)


def resolve_config(args: argparse.Namespace):
    """The stage's config from --config, the --section.key options and --resume."""
    from train.config import load_config

    stage = STAGES[args.stage]
    overrides = [f"{k[len(_PREFIX):]}={v}" for k, v in vars(args).items() if k.startswith(_PREFIX)]
    if args.resume is not None:
        overrides.append(f"checkpoint.resume={args.resume}")
    return load_config(stage.config, args.config, overrides)


def run_stage(args: argparse.Namespace) -> int:
    from train.config import to_toml

    config = resolve_config(args)
    if args.print_config:
        print(to_toml(config), end="")
        return 0
    from train.loop import train

    metrics = train(config, STAGES[args.stage].builder(), stage=args.stage)
    if int(os.environ.get("RANK", "0")) == 0:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
        print(f"herd train {args.stage}: done → {config.run.dir} ({shown})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m train STAGE …` (torchrun's entry); errors as one line like `herd`."""
    parser = argparse.ArgumentParser(prog="python -m train", description="Train one herd stage.")
    add_stage_parsers(parser.add_subparsers(dest="stage", metavar="STAGE", required=True))
    args = parser.parse_args(argv)
    try:
        return run_stage(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - one line, like herd.cli.main
        if os.environ.get("HERD_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"python -m train {args.stage}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, (FileNotFoundError, ValueError)) else 1


def _type_name(kind) -> str:
    return getattr(kind, "__name__", str(kind)).upper()


__all__ = ["register", "add_stage_parsers", "resolve_config", "run_stage", "main"]
