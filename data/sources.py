"""What `herd data fetch` obtains, per dataset kind: the one table of raw sources.

`debian` packages are downloaded and unpacked into the cache (`data.debian.fetch_debian`);
`system` packages are programs herd runs (installed by `scripts/setup_system.sh`) and are only
recorded; `pypi` packages are herd dependencies already in the venv (recorded with their version).
Licences are those of `reference/data-sources.md`; the cache manifest also keeps each package's
own `copyright` licence lines.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Source", "SOURCES", "KINDS", "sources_for"]


@dataclass(frozen=True, kw_only=True)
class Source:
    name: str
    """Package name in its registry."""
    registry: str
    """`debian` (fetched into the cache), `system` (installed program, recorded) or `pypi`."""
    licence: str
    """Licence of the data itself."""
    what: str
    """What herd takes from it."""


SOURCES: dict[str, tuple[Source, ...]] = {
    "text": (
        Source(name="r-cran-janeaustenr", registry="debian", licence="public domain text; package MIT",
               what="Jane Austen's six novels"),
        Source(name="r-cran-tokenizers", registry="debian", licence="public domain text; package MIT",
               what="Moby-Dick (mobydick)"),
        Source(name="r-cran-stringr", registry="debian", licence="public domain text; package MIT/GPL-2",
               what="720 Harvard sentences, common words"),
        Source(name="fortunes", registry="debian", licence="BSD-style", what="fortune cookies"),
        Source(name="fortunes-min", registry="debian", licence="BSD-style", what="fortune cookies (core set)"),
        Source(name="wordnet-base", registry="debian", licence="WordNet 3.0 licence",
               what="WordNet glosses and example sentences"),
    ),
    "images": (
        Source(name="fonts-noto-color-emoji", registry="debian", licence="OFL-1.1 / Apache-2.0",
               what="Noto Color Emoji bitmaps"),
        Source(name="tuxpaint-stamps-default", registry="debian", licence="GPL-2",
               what="Tux Paint stamps with sentence captions"),
        Source(name="emoji", registry="pypi", licence="BSD-3-Clause (CLDR names: Unicode licence)",
               what="CLDR English emoji names"),
    ),
    "video": (
        Source(name="xpenguins", registry="debian", licence="GPL-2", what="penguin action sprite sheets"),
    ),
    "speech": (
        Source(name="espeak-ng", registry="system", licence="GPL-3 (output unencumbered)",
               what="speech synthesiser, 8 English accents × voice variants"),
        Source(name="espeak-ng-data", registry="system", licence="GPL-3", what="espeak-ng voices"),
        Source(name="flite", registry="system", licence="BSD-style (CMU)", what="second synthesiser, 4-5 voices"),
    ),
}

KINDS = tuple(SOURCES)


def sources_for(kinds: list[str] | tuple[str, ...] | None = None) -> list[tuple[str, Source]]:
    """(kind, source) pairs for `kinds` (all kinds if None); unknown kinds are errors."""
    kinds = list(kinds) if kinds else list(KINDS)
    unknown = [k for k in kinds if k not in SOURCES]
    if unknown:
        raise ValueError(f"unknown data kind {unknown[0]!r} (choose from {', '.join(KINDS)})")
    return [(kind, source) for kind in kinds for source in SOURCES[kind]]
