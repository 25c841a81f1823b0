"""`herd eval TASK` (text, caption, video, asr, guard) and `herd transcribe`.

Each task lives in its own module under `eval/` with `register(tasks)` adding its parser (and
`register_commands(subparsers)` for top-level commands such as `herd transcribe`). Those modules
import nothing heavy at import time; a task module that does not exist yet is skipped.
"""

from __future__ import annotations

import argparse
import importlib

TASK_MODULES = ("eval.text", "eval.caption", "eval.video", "eval.asr", "eval.guard", "eval.report", "eval.needle",
                "eval.probe")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint (caption, video, asr, text)",
                                   description="Evaluate a checkpoint on shards or a JSONL manifest; "
                                               "writes scores.json, per-sample JSONL and figures to --out.")
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in TASK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise
            continue
        module.register(tasks)
        if hasattr(module, "register_commands"):
            module.register_commands(subparsers)


__all__ = ["register", "TASK_MODULES"]
