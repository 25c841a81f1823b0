"""Fetch Debian data packages into the herd cache, without installing them.

`apt-get download PKG` fetches the `.deb` from the archive and `dpkg-deb -x` unpacks its files into
`CACHE/debian/PKG/` (no dependencies, no maintainer scripts, no root-only side effects). Each fetch
is recorded in `CACHE/manifest.json` — name, version, size, sha256 of the `.deb`, licence — and a
package already extracted and recorded is not fetched again. This and `pip` are the only network
access in herd (`reference/data-sources.md`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["default_cache", "fetch_debian", "record_system_package", "read_cache_manifest", "sha256_file"]

_NETWORK_ERRORS = ("Could not resolve", "Temporary failure", "Failed to fetch", "Connection failed",
                   "Unable to connect", "Could not connect", "Network is unreachable", "timed out")


def default_cache() -> Path:
    """The cache folder: `$HERD_CACHE`, else `~/.cache/herd`."""
    env = os.environ.get("HERD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "herd"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_cache_manifest(cache: Path) -> dict:
    """The cache's `manifest.json` (`{"debian": {name: record}, "system": {...}}`), empty if absent."""
    path = Path(cache) / "manifest.json"
    if not path.is_file():
        return {"format": 1, "debian": {}, "system": {}}
    data = json.loads(path.read_text())
    data.setdefault("debian", {})
    data.setdefault("system", {})
    return data


@contextmanager
def _locked(cache: Path, name: str = "manifest") -> Iterator[None]:
    """Serialise work on one thing (`manifest` updates, one package's fetch) between processes
    sharing a cache, e.g. builders running in parallel."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".lock-{name}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _update_manifest(cache: Path, section: str, name: str, record: dict) -> None:
    with _locked(cache):
        data = read_cache_manifest(cache)
        data[section][name] = record
        tmp = cache / "manifest.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(cache / "manifest.json")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as err:
        raise RuntimeError(f"{cmd[0]} not found: herd fetches Debian data with apt-get and dpkg-deb") from err


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _download(package: str, dest: Path) -> Path:
    """`apt-get download` into `dest`; one `apt-get update` if the package lists lack it."""
    updated = False
    while True:
        proc = _run(["apt-get", "download", package], cwd=dest)
        if proc.returncode == 0:
            debs = sorted(dest.glob(f"{package}_*.deb"))
            if debs:
                return debs[-1]
            raise RuntimeError(f"apt-get download {package} succeeded but wrote no .deb")
        err = proc.stderr + proc.stdout
        if any(marker in err for marker in _NETWORK_ERRORS):
            raise RuntimeError(f"cannot fetch Debian package {package}: registry unreachable ({_last_line(err)})")
        if not updated and ("Unable to locate" in err or "has no installation candidate" in err
                            or "Can't select" in err):
            upd = _run(["apt-get", "update"])
            if upd.returncode != 0 or any(m in upd.stdout + upd.stderr for m in _NETWORK_ERRORS[:3]):
                raise RuntimeError(f"cannot fetch Debian package {package}: apt-get update failed "
                                   f"({_last_line(upd.stderr + upd.stdout)})")
            updated = True
            continue
        raise RuntimeError(f"cannot fetch Debian package {package}: {_last_line(err)}")


def _licence(root: Path, package: str) -> str:
    """Licence names from the package's `copyright` file (DEP-5 `License:` lines), else 'see copyright'."""
    path = root / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return "unknown"
    names = []
    for line in path.read_text(errors="replace").splitlines():
        match = re.match(r"^License:\s*(\S.*)$", line)
        if match and match.group(1).strip() not in names:
            names.append(match.group(1).strip())
    return ", ".join(names) if names else "see /usr/share/doc/%s/copyright" % package


def fetch_debian(package: str, cache: Path) -> Path:
    """Download and unpack Debian `package` into `cache/debian/<package>/`; return that root.

    Idempotent: a package already extracted and recorded in `cache/manifest.json` is returned
    as it is. Raises `RuntimeError` naming the package when the archive cannot be reached.
    """
    cache = Path(cache)
    root = cache / "debian" / package
    if _fetched(cache, package):
        return root
    with _locked(cache, f"debian-{package}"):
        if not _fetched(cache, package):  # another process may have fetched it while we waited
            _fetch(package, cache, root)
    return root


def _fetched(cache: Path, package: str) -> bool:
    return (package in read_cache_manifest(cache)["debian"]
            and (cache / "debian" / package / ".complete").is_file())


def _fetch(package: str, cache: Path, root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".fetch-{package}-") as tmp:
        tmp_path = Path(tmp)
        deb = _download(package, tmp_path)
        version = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
        staging = tmp_path / "root"
        proc = _run(["dpkg-deb", "-x", str(deb), str(staging)])
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg-deb -x failed for {package}: {_last_line(proc.stderr)}")
        record = {
            "name": package,
            "version": version,
            "deb": deb.name,
            "size": deb.stat().st_size,
            "sha256": sha256_file(deb),
            "licence": _licence(staging, package),
            "path": str(Path("debian") / package),
        }
        (staging / ".complete").write_text(json.dumps(record) + "\n")
        if root.exists():
            shutil.rmtree(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(root)
    _update_manifest(cache, "debian", package, record)


def record_system_package(package: str, cache: Path) -> dict:
    """Record an installed system package (e.g. espeak-ng, used as a program) in the cache manifest.

    Raises `RuntimeError` if it is not installed (herd's `scripts/setup_system.sh` installs it).
    """
    proc = _run(["dpkg-query", "-W", "-f", "${Version}\t${Installed-Size}", package])
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"system package {package} is not installed (apt-get install {package})")
    version, size_kib = (proc.stdout.strip().split("\t") + ["0"])[:2]
    record = {"name": package, "version": version, "installed_size": int(size_kib or 0) * 1024,
              "licence": _licence(Path("/"), package), "system": True}
    _update_manifest(Path(cache), "system", package, record)
    return record
