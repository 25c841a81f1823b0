"""`herd data fetch`: obtain every raw source of the chosen kinds into the cache, recording each."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from data.debian import fetch_debian, read_cache_manifest, record_system_package
from data.sources import sources_for

__all__ = ["fetch_sources"]


def fetch_sources(cache: Path, kinds: list[str] | None = None) -> list[dict]:
    """Fetch (Debian) or record (system, PyPI) the sources of `kinds`; return one record each.

    Idempotent: Debian packages already in the cache are not downloaded again.
    """
    cache = Path(cache)
    records = []
    for kind, source in sources_for(kinds):
        if source.registry == "debian":
            fetch_debian(source.name, cache)
            record = dict(read_cache_manifest(cache)["debian"][source.name])
        elif source.registry == "system":
            record = record_system_package(source.name, cache)
        elif source.registry == "pypi":
            try:
                version = metadata.version(source.name)
            except metadata.PackageNotFoundError as err:
                raise RuntimeError(f"PyPI package {source.name} is not installed (pip install {source.name})") from err
            record = {"name": source.name, "version": version}
        else:
            raise ValueError(f"unknown registry {source.registry!r} for {source.name}")
        record.update(kind=kind, registry=source.registry, licence=source.licence,
                      package_licence=record.get("licence", source.licence))
        records.append(record)
    return records
