"""Webdataset shards: writing them with a manifest, and reading them back with an exact-resume state.

Writing: `write_shards` (a `webdataset.ShardWriter`, size- and count-capped, `{split}-%06d.tar`,
mtime 0 so a build is byte-for-byte reproducible) and `write_manifest` (`manifest.json`: counts
per split, sha256 per shard, sources with licences — DESIGN.md "Shards").

Reading: `ShardReader` yields decoded samples of one reader *slot* (rank × worker) of a shard
list, in an order fixed by (seed, epoch): shards are permuted per epoch and dealt to the slots;
with fewer shards than slots every slot reads every shard and keeps every n-th sample. The slot's
shards are then read in windows of `interleave` consecutive shards, and the samples of a whole
window are permuted together (random access into the uncompressed tars, so no shuffle buffer and
nothing to replay on resume). Windows matter because builders write their sources one after the
other: the video build's xpenguins clips follow its sprite clips and fill a shard of their own, and
read shard by shard they reached training as a run of penguin-only batches once an epoch, which the
tiny video-adapter never learned. Its `state_dict()` — epoch, shard order, window cursor, offset,
skip counts — restores the exact position.

Bad input (a truncated shard, a corrupt member, a missing key, non-UTF-8 text, or anything a
`decode` hook rejects with `ValueError`) is skipped with one warning line naming shard and key and
counted in `reader.skipped`; with `strict=True` it raises `ValueError` instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["write_shards", "write_manifest", "read_manifest", "split_shards", "ShardReader",
           "decode_text", "decode_raw", "Decoder"]

log = logging.getLogger("herd.data")

Decoder = Callable[[dict[str, Any]], dict[str, Any]]
"""A sample hook: takes `{"__key__", "__shard__", ext: bytes, ...}`, returns the decoded sample;
raises `ValueError` for corrupt input (e.g. `data.media.decode_image`) and `KeyError` for a
missing key."""


# ----------------------------------------------------------------------------------------- writing

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_shards(samples: Iterable[dict], out_dir: Path, split: str, *, max_size: int = 64 << 20,
                 max_count: int = 10000) -> list[dict]:
    """Write `samples` (dicts with `__key__` and `ext: value` fields, webdataset-encoded by extension:
    `txt` str, `json` dict, `png` bytes/PIL image, …) to `out_dir/{split}-%06d.tar`.

    Returns one `{"path": name relative to out_dir, "count", "bytes", "sha256"}` per shard.
    A sample without `__key__` gets `{split}-{index:08d}`.
    """
    import webdataset as wds

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{split}-*.tar"):
        stale.unlink()  # a rebuild must not leave shards of an earlier, larger build behind
    finished: list[tuple[str, int]] = []
    state = {"writer": None}

    def post(fname: str) -> None:
        finished.append((fname, state["writer"].count))

    writer = wds.ShardWriter(str(out_dir / f"{split}-%06d.tar"), maxcount=max_count, maxsize=max_size,
                             post=post, verbose=0, mtime=0.0)
    state["writer"] = writer
    with writer:
        for index, sample in enumerate(samples):
            if "__key__" not in sample:
                sample = {"__key__": f"{split}-{index:08d}", **sample}
            writer.write(sample)
    infos = []
    for fname, count in finished:
        path = Path(fname)
        if count == 0:
            path.unlink()  # ShardWriter opens its first shard eagerly
            continue
        infos.append({"path": path.name, "count": count, "bytes": path.stat().st_size, "sha256": _sha256(path)})
    return infos


def write_manifest(out_dir: Path, *, kind: str, splits: dict[str, list[dict]], sources: list[dict],
                   extra: dict | None = None) -> Path:
    """Write `out_dir/manifest.json`: kind, per split the sample count and shard list (path, count,
    bytes, sha256), the sources (name, version, licence, …) and any `extra` fields (build
    settings, statistics). No timestamps, so a rebuild with the same seed gives the same file."""
    manifest = {
        "format": 1,
        "kind": kind,
        "splits": {name: {"count": sum(s["count"] for s in shards), "shards": shards}
                   for name, shards in splits.items()},
        "sources": sources,
    }
    if extra:
        manifest.update(extra)
    path = Path(out_dir) / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def read_manifest(out_dir: Path) -> dict:
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest.json in {out_dir}")
    return json.loads(path.read_text())


def split_shards(root: Path, split: str) -> list[Path]:
    """The shard paths of `split` in a built dataset folder (from its manifest, else by pattern)."""
    root = Path(root)
    if (root / "manifest.json").is_file():
        manifest = read_manifest(root)
        if split not in manifest["splits"]:
            raise ValueError(f"{root}: no split {split!r} (has {', '.join(manifest['splits'])})")
        return [root / s["path"] for s in manifest["splits"][split]["shards"]]
    paths = sorted(root.glob(f"{split}-*.tar"))
    if not paths:
        raise FileNotFoundError(f"no {split}-*.tar shards in {root}")
    return paths


# ---------------------------------------------------------------------------------------- decoding

def decode_raw(sample: dict[str, Any]) -> dict[str, Any]:
    """Leave every field as bytes."""
    return sample


def decode_text(sample: dict[str, Any]) -> dict[str, Any]:
    """Decode `txt` (strict UTF-8) and `json`; needs `txt`."""
    if "txt" not in sample:
        raise KeyError("txt")
    out = dict(sample)
    out["txt"] = sample["txt"].decode("utf-8")  # UnicodeDecodeError is a ValueError: skipped/counted
    if "json" in sample:
        out["json"] = json.loads(sample["json"])
    return out


# ----------------------------------------------------------------------------------------- reading

_KEY_RE = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key/extension split


@functools.lru_cache(maxsize=1024)
def _shard_index(path: Path, size: int, mtime_ns: int) -> tuple[list[tuple[str, dict[str, tuple[int, int]]]], str | None]:
    """`_index_shard(path)`, once per process for each version (size, mtime) of the file: every
    reader of a shard (the training loader, each evaluation's fresh loader) shares one index, since
    listing a tar's members costs ~0.8 s per 15,000 of them. Readers never modify it."""
    return _index_shard(path)


def _index_shard(path: Path) -> tuple[list[tuple[str, dict[str, tuple[int, int]]]], str | None]:
    """Samples of a tar as `(key, {ext: (data offset, size)})` in file order, and — if the tar is
    truncated — the key of the last, possibly incomplete, sample, which is dropped ("-" if none)."""
    samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
    truncated = False
    with tarfile.open(path, "r:") as tar:
        try:
            for member in tar:
                if not member.isfile():
                    continue
                match = _KEY_RE.match(member.name)
                if match is None:
                    continue
                key, ext = match.groups()
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                samples[-1][1][ext] = (member.offset_data, member.size)
        except tarfile.ReadError:
            truncated = True
    size = path.stat().st_size
    if samples and any(off + n > size for off, n in samples[-1][1].values()):
        truncated = True
    if not truncated:
        return samples, None
    return samples, samples.pop()[0] if samples else "-"


class ShardReader:
    """Decoded samples of one slot (`slot` of `num_slots` = rank·workers + worker) of `shards`.

    Iterates epochs until `epochs` (None: forever). Order per epoch is a pure function of
    (seed, epoch), so `state_dict()` stores a position, not an RNG stream. `required` lists the
    sample keys that must be present (missing → skipped as `missing_key`).
    """

    def __init__(self, shards: Sequence[str | Path], *, slot: int = 0, num_slots: int = 1, seed: int = 0,
                 shuffle: bool = True, epochs: int | None = None, decode: Decoder = decode_raw,
                 required: Sequence[str] = (), strict: bool = False, interleave: int = 8) -> None:
        if not shards:
            raise ValueError("ShardReader needs at least one shard")
        if not 0 <= slot < num_slots:
            raise ValueError(f"slot {slot} out of range for {num_slots} slots")
        if interleave < 1:
            raise ValueError(f"interleave must be ≥ 1 shard, got {interleave}")
        self.shards = [Path(s) for s in shards]
        self.slot, self.num_slots, self.interleave = slot, num_slots, interleave
        self.seed, self.shuffle, self.epochs = seed, shuffle, epochs
        self.decode, self.required, self.strict = decode, tuple(required), strict
        self.epoch, self.cursor, self.offset = 0, 0, 0
        self.skipped: Counter[str] = Counter()
        self._index: dict[Path, tuple[list, str | None]] = {}
        self._order_cache: tuple[int, list[int]] = (-1, [])
        self._sample_cache: tuple[tuple, list[tuple[int, int]]] = ((), [])

    # -- order -------------------------------------------------------------------------------
    def shard_order(self, epoch: int) -> list[int]:
        """Indices into `shards` that this slot reads in `epoch`, in order."""
        if self._order_cache[0] != epoch:
            self._order_cache = (epoch, self._shard_order(epoch))
        return self._order_cache[1]

    def _shard_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.shards)))
        if self.shuffle:
            random.Random(f"shards:{self.seed}:{epoch}").shuffle(order)
        if len(order) >= self.num_slots:
            return order[self.slot::self.num_slots]
        return order

    def windows(self, epoch: int) -> list[list[int]]:
        """This slot's shards in `epoch`, in read order, grouped into windows of `interleave`."""
        order = self.shard_order(epoch)
        return [order[i:i + self.interleave] for i in range(0, len(order), self.interleave)]

    def _window_order(self, epoch: int, window: list[int], counts: list[int]) -> list[tuple[int, int]]:
        """(shard index, sample position) pairs of one window, in read order."""
        key = (epoch, tuple(window), tuple(counts))
        if self._sample_cache[0] != key:
            order = [(shard, i) for shard, count in zip(window, counts) for i in range(count)]
            if self.shuffle:  # a one-shard window shuffles exactly as readers did before windows
                random.Random(f"samples:{self.seed}:{epoch}:{','.join(map(str, window))}").shuffle(order)
            if len(self.shards) < self.num_slots:  # fewer shards than slots: deal samples instead
                order = order[self.slot::self.num_slots]
            self._sample_cache = (key, order)
        return self._sample_cache[1]

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "offset": self.offset, "seed": self.seed,
                "slot": self.slot, "num_slots": self.num_slots, "interleave": self.interleave,
                "shard_order": [self.shards[i].name for i in self.shard_order(self.epoch)],
                "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict) -> None:
        if (state["slot"], state["num_slots"], state["seed"]) != (self.slot, self.num_slots, self.seed):
            raise ValueError(f"reader state is for slot {state['slot']}/{state['num_slots']} seed {state['seed']}, "
                             f"not {self.slot}/{self.num_slots} seed {self.seed}")
        # the position is only meaningful in the windows it was saved with (states from before
        # windows read shard by shard: 1)
        self.interleave = state.get("interleave", 1)
        self.epoch, self.cursor, self.offset = state["epoch"], state["cursor"], state["offset"]
        expected = [self.shards[i].name for i in self.shard_order(self.epoch)]
        if state.get("shard_order", expected) != expected:
            raise ValueError("reader state was saved over a different shard list")
        self.skipped = Counter(state.get("skipped", {}))

    # -- reading -----------------------------------------------------------------------------
    def _bad(self, kind: str, shard: Path, key: str, reason: str) -> None:
        message = f"{shard}: key {key}: {kind.replace('_', ' ')}: {reason}"
        if self.strict:
            raise ValueError(message)
        self.skipped[kind] += 1
        log.warning("skipping %s", message)

    def _shard_samples(self, path: Path, entering: bool) -> list:
        if path not in self._index:
            try:
                stat = path.stat()
                self._index[path] = _shard_index(path, stat.st_size, stat.st_mtime_ns)
            except (OSError, tarfile.TarError) as err:
                self._index[path] = ([], "")  # "": unreadable
                if entering:
                    self._bad("unreadable_shard", path, "-", str(err).splitlines()[0] if str(err) else type(err).__name__)
                return []
        samples, dropped = self._index[path]
        if entering and dropped == "":
            self._bad("unreadable_shard", path, "-", "cannot open")
        elif entering and dropped:
            self._bad("truncated_shard", path, dropped, "tar ends mid-member; the incomplete sample is dropped")
        return samples

    def _read(self, path: Path, key: str, fields: dict[str, tuple[int, int]]) -> dict | None:
        sample: dict[str, Any] = {"__key__": key, "__shard__": path.name}
        with open(path, "rb") as handle:
            for ext, (offset, size) in fields.items():
                handle.seek(offset)
                data = handle.read(size)
                if len(data) != size:
                    self._bad("corrupt", path, key, f"member .{ext} is cut short")
                    return None
                sample[ext] = data
        missing = [k for k in self.required if k not in sample]
        if missing:
            self._bad("missing_key", path, key, f"no .{missing[0]}")
            return None
        try:
            return self.decode(sample)
        except UnicodeDecodeError as err:
            self._bad("not_utf8", path, key, str(err))
        except KeyError as err:
            self._bad("missing_key", path, key, f"no .{err.args[0] if err.args else '?'}")
        except ValueError as err:
            self._bad("corrupt", path, key, str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        while self.epochs is None or self.epoch < self.epochs:
            whole_epoch = self.cursor == 0 and self.offset == 0  # traversed entirely inside this call?
            windows = self.windows(self.epoch)
            while self.cursor < len(windows):
                window = windows[self.cursor]
                samples = [self._shard_samples(self.shards[i], entering=self.offset == 0) for i in window]
                order = self._window_order(self.epoch, window, [len(s) for s in samples])
                while self.offset < len(order):
                    shard, position = order[self.offset]
                    self.offset += 1
                    key, fields = samples[window.index(shard)][position]
                    sample = self._read(self.shards[shard], key, fields)
                    if sample is not None:
                        return sample
                self.cursor, self.offset = self.cursor + 1, 0
            self.epoch, self.cursor, self.offset = self.epoch + 1, 0, 0
            if whole_epoch:  # a whole epoch without one good sample: stop rather than spin
                message = (f"no readable samples for reader slot {self.slot}/{self.num_slots} in "
                           f"{len(self.shards)} shard(s), e.g. {self.shards[0]}")
                if self.strict:
                    raise ValueError(message)
                log.warning("%s; this reader stops", message)
                break
        raise StopIteration
