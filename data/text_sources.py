"""Readers for the raw text corpora in the fetch cache (`reference/data-sources.md`, Text).

Each reader returns `Doc`s — one training document each: an Austen or Moby-Dick chapter, a
Harvard list of ten sentences, one fortune, or a run of WordNet synsets (words, gloss and quoted
examples) from one lexicographer file. `group` names the unit that must stay in one split.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Doc", "read_r_lazyload", "austen", "moby_dick", "harvard", "fortunes", "wordnet"]

_CHAPTER = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\b\.?", re.IGNORECASE)
_R_LIB = Path("usr/lib/R/site-library")


@dataclass(frozen=True)
class Doc:
    key: str
    """Unique sample key (letters, digits, `-`, `_`; no dots: webdataset splits keys at the first dot)."""
    source: str
    title: str
    text: str
    group: str
    """Documents of one group always land in the same split (a novel, a fortune, a WordNet run)."""


def read_r_lazyload(data_dir: Path) -> dict:
    """Objects of an R lazy-load database (`Rdata.rdx` + `Rdata.rdb`) as Python objects, without R.

    The `.rdx` is a gzipped RDS index `{variables: {name: (offset, length)}}`; each `.rdb` chunk is a
    4-byte big-endian length and a zlib stream, or a type byte (`2` bz2, `X` xz, `0` raw) and body.
    """
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata: "Unknown file type: assumed RDS"
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress((data_dir / "Rdata.rdx").read_bytes())))
        blob = (data_dir / "Rdata.rdb").read_bytes()
        objects = {}
        for name, (offset, length) in index["variables"].items():
            chunk = blob[int(offset):int(offset) + int(length)]
            (_size,) = struct.unpack(">I", chunk[:4])
            body = chunk[4:]
            kind = body[:1]
            if kind == b"2":
                raw = bz2.decompress(body[1:])
            elif kind == b"X":
                raw = lzma.decompress(body[1:])
            elif kind == b"0":
                raw = body[1:]
            else:
                raw = zlib.decompress(body)
            objects[str(name)] = rdata.conversion.convert(rdata.parser.parse_data(raw, expand_altrep=True))
    return objects


def _paragraphs(lines: list[str]) -> str:
    """Unwrap hard-wrapped lines into paragraphs separated by a blank line."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def _chapters(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Split a novel's lines at chapter headings: [(heading, body lines)]; front matter dropped."""
    chapters: list[tuple[str, list[str]]] = []
    for line in lines:
        if _CHAPTER.match(line):
            chapters.append((line.strip(), []))
        elif chapters:
            chapters[-1][1].append(line)
    return chapters


AUSTEN_TITLES = {"emma": "Emma", "mansfieldpark": "Mansfield Park", "northangerabbey": "Northanger Abbey",
                 "persuasion": "Persuasion", "prideprejudice": "Pride and Prejudice",
                 "sensesensibility": "Sense and Sensibility"}


def austen(cache: Path) -> list[Doc]:
    """Jane Austen's six novels, one document per chapter (group = the novel)."""
    novels = read_r_lazyload(cache / "debian/r-cran-janeaustenr" / _R_LIB / "janeaustenr/data")
    docs = []
    for name in sorted(novels):
        lines = [str(line) for line in novels[name]]
        for number, (heading, body) in enumerate(_chapters(lines), 1):
            text = _paragraphs(body)
            if text:
                docs.append(Doc(f"austen-{name}-{number:03d}", "austen", AUSTEN_TITLES.get(name, name),
                                f"{heading}\n\n{text}", f"austen-{name}"))
    return docs


def moby_dick(cache: Path) -> list[Doc]:
    """Moby-Dick without the Gutenberg header and licence, one document per chapter (+ front matter,
    + epilogue); group = the chapter, so a split can hold out a run of chapters."""
    objects = read_r_lazyload(cache / "debian/r-cran-tokenizers" / _R_LIB / "tokenizers/data")
    text = str(objects["mobydick"][0]).replace("\r\n", "\n").lstrip("\ufeff")
    start = text.find("\n", text.find("*** START OF")) + 1
    end = text.find("End of Project Gutenberg")
    text = text[start:end if end > 0 else len(text)]
    parts = re.split(r"\n(?=CHAPTER \d+\.|Epilogue\n)", text)
    docs = []
    for number, part in enumerate(parts):
        lines = part.split("\n")
        heading = lines[0].strip() if number else "Etymology and Extracts"
        body = _paragraphs(lines[1:] if number else lines)
        if body:
            docs.append(Doc(f"mobydick-{number:03d}", "mobydick", "Moby-Dick", f"{heading}\n\n{body}",
                            f"mobydick-{number:03d}"))
    return docs


def harvard(cache: Path) -> list[Doc]:
    """The 720 Harvard sentences as their 72 lists of ten (one document per list)."""
    objects = read_r_lazyload(cache / "debian/r-cran-stringr" / _R_LIB / "stringr/data")
    sentences = [str(s) for s in objects["sentences"]]
    return [Doc(f"harvard-{i // 10 + 1:02d}", "harvard", f"Harvard list {i // 10 + 1}",
                "\n".join(sentences[i:i + 10]), f"harvard-{i // 10 + 1:02d}")
            for i in range(0, len(sentences), 10)]


def harvard_list_split(number: int) -> str:
    """The split of Harvard list `number` (1–72) for every builder: the speech stage speaks these
    sentences and the text corpus holds them as documents, so a list the recogniser is tested on
    must not be text the frozen LM was trained on (~10 % test, ~7 % validation)."""
    from data.scenes import stable_fraction

    f = stable_fraction("harvard", str(number))
    return "test" if f < 0.10 else "validation" if f < 0.17 else "train"


def harvard_sentences(cache: Path) -> list[str]:
    """The 720 Harvard sentences (speech prompts)."""
    objects = read_r_lazyload(cache / "debian/r-cran-stringr" / _R_LIB / "stringr/data")
    return [str(s) for s in objects["sentences"]]


def fortunes(cache: Path) -> list[Doc]:
    """Every fortune of `fortunes` and `fortunes-min` (latin-1 files split on `\\n%\\n`)."""
    docs = []
    for package in ("fortunes-min", "fortunes"):
        folder = cache / "debian" / package / "usr/share/games/fortunes"
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix in (".dat", ".u8") or path.is_symlink() or not path.is_file():
                continue
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            for number, item in enumerate(text.replace("\r\n", "\n").split("\n%\n")):
                item = item.strip("\n%").rstrip()
                if item.strip():
                    key = f"fortune-{package}-{path.name}-{number:05d}".replace(".", "_")
                    docs.append(Doc(key, "fortunes", path.name, item, key))
    return docs


# WordNet 3.0 lexicographer files by number (`lexnames`, not shipped in wordnet-base).
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def _synset(line: str) -> str | None:
    """`word, other word: gloss; "example"` from one line of a WordNet `data.*` file."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    if len(fields) < 5 or not gloss.strip():
        return None
    count = int(fields[3], 16)
    words = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(count)]
    return f"{', '.join(words)}: {gloss.strip()}"


def wordnet(cache: Path, per_doc: int = 40) -> list[Doc]:
    """WordNet 3.0 synsets (words, gloss, quoted examples), `per_doc` consecutive synsets of one
    lexicographer file (e.g. noun.animal) per document."""
    import collections

    folder = cache / "debian/wordnet-base/usr/share/wordnet"
    by_lexfile: dict[str, list[str]] = collections.defaultdict(list)
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (folder / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):
                continue  # licence header
            synset = _synset(line)
            if synset:
                lexfile = _LEXNAMES[int(line.split()[1])]
                by_lexfile[lexfile].append(synset)
    docs = []
    for lexfile in sorted(by_lexfile):
        synsets = by_lexfile[lexfile]
        for start in range(0, len(synsets), per_doc):
            key = f"wordnet-{lexfile}-{start // per_doc:04d}".replace(".", "_")
            docs.append(Doc(key, "wordnet", f"WordNet {lexfile}", "\n".join(synsets[start:start + per_doc]), key))
    return docs
