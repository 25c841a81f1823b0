"""`herd data …`: surface, dispatch and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.shards import write_manifest, write_shards
from herd.cli import build_parser, main


def test_data_commands_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["data", "build", "text", "--out", "x", "--preset", "full", "--seed", "3"])
    assert (args.kind, args.preset, args.seed, args.out) == ("text", "full", 3, Path("x"))
    args = parser.parse_args(["data", "fetch", "--only", "text,video", "--cache", "c"])
    assert args.only == "text,video" and args.cache == Path("c")
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "build", "sounds", "--out", "x"])


def test_build_without_fetched_data_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "build", "text", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("herd data: error:") and "herd data fetch" in err and "\n" not in err


def test_unknown_kind_to_fetch_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["data", "fetch", "--only", "smells", "--cache", str(tmp_path)]) == 2
    assert "unknown data kind 'smells'" in capsys.readouterr().err


def test_curate_command_writes_report(tmp_path: Path, capsys, make_docs) -> None:
    docs = make_docs(30)
    shards = write_shards(({"__key__": f"d{i}", "txt": t} for i, t in enumerate(docs + docs[:3])), tmp_path / "in", "train")
    write_manifest(tmp_path / "in", kind="text", splits={"train": shards}, sources=[])
    assert main(["data", "curate", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "exact_dup 3" in out and (tmp_path / "out" / "curation_report.md").is_file()
