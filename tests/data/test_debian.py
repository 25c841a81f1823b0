"""fetch_debian: unpack, record, idempotence and one-line errors — with a locally built .deb, no network."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from data import debian

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _make_deb(tmp_path: Path, name: str = "herd-test-data") -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.2-3\nArchitecture: all\nMaintainer: herd <herd@example.org>\n"
        "Description: test data\n")
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                                   "Files: *\nLicense: GPL-2+\n")
    (root / "usr/share/herd").mkdir(parents=True)
    (root / "usr/share/herd/words.txt").write_text("hello whale\n")
    deb = tmp_path / f"{name}_1.2-3_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
    return deb


def _fake_apt(monkeypatch, deb: Path, calls: list, *, stderr: str = "", fail_first: bool = False) -> None:
    real_run = debian._run

    def run(cmd, cwd=None):
        if cmd[:2] == ["apt-get", "download"]:
            calls.append("download")
            if stderr and (not fail_first or calls.count("download") == 1):
                return subprocess.CompletedProcess(cmd, 100, "", stderr)
            shutil.copy(deb, Path(cwd) / deb.name)
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if cmd[:2] == ["apt-get", "update"]:
            calls.append("update")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return real_run(cmd, cwd)

    monkeypatch.setattr(debian, "_run", run)


def test_fetch_unpacks_records_and_is_idempotent(tmp_path: Path, monkeypatch) -> None:
    deb = _make_deb(tmp_path)
    calls: list = []
    _fake_apt(monkeypatch, deb, calls)
    cache = tmp_path / "cache"
    root = debian.fetch_debian("herd-test-data", cache)
    assert root == cache / "debian/herd-test-data"
    assert (root / "usr/share/herd/words.txt").read_text() == "hello whale\n"
    record = json.loads((cache / "manifest.json").read_text())["debian"]["herd-test-data"]
    assert record["version"] == "1.2-3" and record["licence"] == "GPL-2+"
    assert record["sha256"] == debian.sha256_file(deb) and record["size"] == deb.stat().st_size
    assert debian.fetch_debian("herd-test-data", cache) == root
    assert calls == ["download"]  # second call: nothing fetched


def test_unknown_package_triggers_one_apt_update(tmp_path: Path, monkeypatch) -> None:
    calls: list = []
    _fake_apt(monkeypatch, _make_deb(tmp_path), calls, stderr="E: Unable to locate package herd-test-data",
              fail_first=True)
    debian.fetch_debian("herd-test-data", tmp_path / "cache")
    assert calls == ["download", "update", "download"]


def test_unreachable_registry_is_one_line_naming_the_package(tmp_path: Path, monkeypatch) -> None:
    _fake_apt(monkeypatch, _make_deb(tmp_path), [],
              stderr="Err:1 http://deb.debian.org/debian bookworm/main\n  Temporary failure resolving 'deb.debian.org'\n"
                     "E: Failed to fetch http://deb.debian.org/debian/pool/x.deb  Temporary failure resolving\n")
    with pytest.raises(RuntimeError, match="herd-test-data") as info:
        debian.fetch_debian("herd-test-data", tmp_path / "cache")
    assert "\n" not in str(info.value) and "unreachable" in str(info.value)


def test_default_cache_honours_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HERD_CACHE", str(tmp_path))
    assert debian.default_cache() == tmp_path
    monkeypatch.delenv("HERD_CACHE")
    assert debian.default_cache() == Path.home() / ".cache" / "herd"
