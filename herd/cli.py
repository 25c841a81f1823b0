"""The `herd` command: one entry point, command groups contributed by the packages.

Each package that offers commands has a `cli.py` with `register(subparsers)`; it adds its
commands and sets `handler` on each parser. Those modules import nothing heavy at import time,
so `herd --help` is instant. Every error reaches the user as one line and a non-zero exit
(set HERD_DEBUG=1 to see the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order of `herd --help`.
COMMAND_MODULES = ("data.cli", "text.cli", "text.scaling_cli", "train.cli", "eval.cli", "chat.cli")


class UsageError(Exception):
    """A user mistake (bad path, bad value): reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herd",
        description="Train and use Llama 3 style multimodal models: text, images, video, speech.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise  # a real import error inside the module, not a missing command module
            continue  # a package that offers no commands yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("herd: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI's contract: one line, never a traceback
        if os.environ.get("HERD_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"herd {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, (UsageError, FileNotFoundError, ValueError)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
