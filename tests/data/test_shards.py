"""Shard writing, manifests, and the ShardReader: order, rank/worker split, resume, bad input."""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from pathlib import Path

import pytest

from data.shards import ShardReader, decode_text, read_manifest, split_shards, write_manifest, write_shards


def _texts(reader: ShardReader) -> list[str]:
    return [s["txt"] for s in reader]


def test_write_shards_caps_counts_and_records_sha256(tmp_path: Path) -> None:
    infos = write_shards(({"txt": f"sample {i}", "json": {"i": i}} for i in range(25)), tmp_path, "train", max_count=10)
    assert [i["count"] for i in infos] == [10, 10, 5]
    assert [i["path"] for i in infos] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    for info in infos:
        assert hashlib.sha256((tmp_path / info["path"]).read_bytes()).hexdigest() == info["sha256"]
    write_manifest(tmp_path, kind="text", splits={"train": infos}, sources=[{"name": "x", "licence": "MIT"}],
                   extra={"seed": 3})
    manifest = read_manifest(tmp_path)
    assert manifest["splits"]["train"]["count"] == 25 and manifest["seed"] == 3
    assert split_shards(tmp_path, "train") == [tmp_path / i["path"] for i in infos]


def test_write_shards_is_byte_reproducible_and_size_capped(tmp_path: Path) -> None:
    samples = [{"__key__": f"k{i}", "txt": "x" * 3000} for i in range(20)]
    a = write_shards(samples, tmp_path / "a", "train", max_size=10_000)
    b = write_shards(samples, tmp_path / "b", "train", max_size=10_000)
    assert [i["sha256"] for i in a] == [i["sha256"] for i in b]
    assert len(a) > 1 and all(i["count"] <= 4 for i in a)


def test_empty_split_writes_no_shard(tmp_path: Path) -> None:
    assert write_shards([], tmp_path, "test") == []
    assert not list(tmp_path.glob("test-*.tar"))


def test_one_epoch_reads_every_sample_once(text_shards) -> None:
    shards, docs = text_shards
    got = _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=5))
    assert sorted(got) == sorted(docs)
    assert got != docs  # shuffled
    assert got == _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=5))  # deterministic
    two = _texts(ShardReader(shards, decode=decode_text, epochs=2, seed=5))
    assert two[:40] == got and sorted(two[40:]) == sorted(docs) and two[40:] != got  # new order per epoch


def test_readers_share_one_index_per_version_of_a_shard(tmp_path: Path, monkeypatch) -> None:
    import data.shards as shards_module

    calls = []
    real = shards_module._index_shard
    monkeypatch.setattr(shards_module, "_index_shard", lambda path: calls.append(path) or real(path))
    shards_module._shard_index.cache_clear()
    docs = [f"document {i}" for i in range(6)]
    (entry,) = write_shards(({"__key__": f"d{i}", "txt": t} for i, t in enumerate(docs)), tmp_path, "train")
    shard = tmp_path / entry["path"]
    for _ in range(3):  # e.g. the training loader and two evaluations' fresh loaders
        assert sorted(_texts(ShardReader([shard], decode=decode_text, epochs=1))) == docs
    assert calls == [shard]
    write_shards(({"__key__": f"d{i}", "txt": t} for i, t in enumerate(docs[:4])), tmp_path, "train")  # rebuilt
    assert sorted(_texts(ShardReader([shard], decode=decode_text, epochs=1))) == docs[:4]
    assert calls == [shard, shard]


@pytest.mark.parametrize("num_slots", [2, 4, 8])  # 5 shards: dealt by shard (2, 4) or by sample (8)
def test_slots_partition_the_data(text_shards, num_slots: int) -> None:
    shards, docs = text_shards
    parts = [_texts(ShardReader(shards, slot=s, num_slots=num_slots, decode=decode_text, epochs=1))
             for s in range(num_slots)]
    flat = [t for part in parts for t in part]
    assert sorted(flat) == sorted(docs) and all(parts)


@pytest.mark.parametrize("interleave", [1, 2, 8])  # 5 shards: 5, 3 or 1 window(s) an epoch
def test_reader_state_resumes_exactly(text_shards, interleave: int) -> None:
    shards, _ = text_shards
    full = _texts(ShardReader(shards, decode=decode_text, epochs=3, seed=1, interleave=interleave))
    first = ShardReader(shards, decode=decode_text, epochs=3, seed=1, interleave=interleave)
    head = [next(first)["txt"] for _ in range(53)]
    state = json.loads(json.dumps(first.state_dict()))
    assert state["epoch"] == 1 and state["shard_order"]
    second = ShardReader(shards, decode=decode_text, epochs=3, seed=1)  # the state brings its windows
    second.load_state_dict(state)
    assert head + _texts(second) == full


def test_a_window_mixes_its_shards(tmp_path: Path) -> None:
    """Sources written one after the other (a shard of 'a', then one of 'b') meet in every stretch
    of the read; shard by shard (`interleave=1`) they come in two blocks."""
    write_shards(({"__key__": f"{c}{i}", "txt": c} for c in "ab" for i in range(50)), tmp_path, "train", max_count=50)
    shards = split_shards(tmp_path, "train")
    mixed = _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=0))
    assert sorted(mixed) == ["a"] * 50 + ["b"] * 50
    assert all(set(mixed[i:i + 20]) == {"a", "b"} for i in range(0, 100, 20))
    blocks = _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=0, interleave=1))
    assert blocks in (["a"] * 50 + ["b"] * 50, ["b"] * 50 + ["a"] * 50)
    assert mixed == _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=0))  # deterministic


def test_a_state_from_before_windows_resumes_shard_by_shard(text_shards) -> None:
    shards, _ = text_shards
    old = ShardReader(shards, decode=decode_text, epochs=1, seed=2, interleave=1)
    head = [next(old)["txt"] for _ in range(11)]
    state = old.state_dict()
    del state["interleave"]
    resumed = ShardReader(shards, decode=decode_text, epochs=1, seed=2)
    resumed.load_state_dict(state)
    assert head + _texts(resumed) == _texts(ShardReader(shards, decode=decode_text, epochs=1, seed=2, interleave=1))


def test_state_of_another_slot_is_refused(text_shards) -> None:
    shards, _ = text_shards
    state = ShardReader(shards, slot=0, num_slots=2).state_dict()
    with pytest.raises(ValueError, match="slot"):
        ShardReader(shards, slot=1, num_slots=2).load_state_dict(state)


# --------------------------------------------------------------------------------- bad input

def _bad_shards(tmp_path: Path) -> list[Path]:
    """good: 6 docs; a truncated shard; members that are non-UTF-8 / missing txt / corrupt json."""
    good = write_shards(({"__key__": f"g{i}", "txt": f"good {i}"} for i in range(6)), tmp_path, "good")
    write_shards(({"__key__": f"t{i}", "txt": f"trunc {i} " + "y" * 2000} for i in range(3)), tmp_path, "trunc")
    trunc = tmp_path / "trunc-000000.tar"
    with tarfile.open(trunc) as tar:
        cut = tar.getmembers()[2].offset_data + 100
    trunc.write_bytes(trunc.read_bytes()[:cut])  # cuts the 3rd sample short, drops the end blocks
    bad = {"latin": {"txt": "caf\xe9".encode("latin-1")}, "nokey": {"json": {"a": 1}},
           "badjson": {"txt": "fine text", "json": b"{not json"}}
    for key, fields in bad.items():
        write_shards([{"__key__": key, **fields}], tmp_path, key)
    return [tmp_path / good[0]["path"], trunc, *(tmp_path / f"{key}-000000.tar" for key in bad)]


def test_bad_input_is_skipped_counted_and_named(tmp_path: Path, caplog) -> None:
    shards = _bad_shards(tmp_path)
    reader = ShardReader(shards, decode=decode_text, required=("txt",), epochs=1, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="herd.data"):
        got = sorted(_texts(reader))
    assert got == sorted([f"good {i}" for i in range(6)] + [f"trunc {i} " + "y" * 2000 for i in range(2)])
    assert reader.skipped == {"truncated_shard": 1, "not_utf8": 1, "missing_key": 1, "corrupt": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("\n" not in line for line in lines)
    assert any("trunc-000000.tar" in line and "t2" in line for line in lines)
    assert any("latin-000000.tar" in line and "key latin" in line for line in lines)
    assert any("key nokey" in line and ".txt" in line for line in lines)
    assert any("key badjson" in line for line in lines)


@pytest.mark.parametrize("which", ["trunc", "latin", "nokey", "badjson"])
def test_strict_mode_raises_on_each_kind(tmp_path: Path, which: str) -> None:
    shards = _bad_shards(tmp_path)
    only = [s for s in shards if s.name.startswith(which)]
    reader = ShardReader(only, decode=decode_text, required=("txt",), epochs=1, shuffle=False, strict=True)
    with pytest.raises(ValueError, match=f"{which}-000000.tar"):
        list(reader)


def test_decoder_hook_value_error_is_a_corrupt_sample(tmp_path: Path) -> None:
    """The media decoders (data.media.decode_image …) plug in here: ValueError → skipped as corrupt."""
    write_shards([{"__key__": "a", "png": b"\x89PNG-not-really"}, {"__key__": "b", "png": b"ok"}], tmp_path, "img")

    def decode(sample: dict) -> dict:
        if sample["png"] != b"ok":
            raise ValueError("cannot identify image file")
        return sample

    reader = ShardReader([tmp_path / "img-000000.tar"], decode=decode, required=("png",), epochs=1)
    assert [s["__key__"] for s in reader] == ["b"] and reader.skipped == {"corrupt": 1}


def test_unreadable_shard_is_counted(tmp_path: Path, text_shards) -> None:
    shards, docs = text_shards
    junk = tmp_path / "junk-000000.tar"
    junk.write_bytes(b"this is not a tar file at all" * 40)
    reader = ShardReader([*shards, junk], decode=decode_text, epochs=1)
    assert sorted(_texts(reader)) == sorted(docs)
    assert reader.skipped["unreadable_shard"] == 1


def test_all_bad_data_stops_instead_of_spinning(tmp_path: Path) -> None:
    write_shards([{"__key__": "x", "json": {"a": 1}}], tmp_path, "train")
    reader = ShardReader([tmp_path / "train-000000.tar"], decode=decode_text, required=("txt",))
    assert list(reader) == [] and reader.skipped == {"missing_key": 1}


def test_truncated_shard_index_is_a_valid_tar_prefix(tmp_path: Path) -> None:
    shards = _bad_shards(tmp_path)
    with pytest.raises(tarfile.ReadError):
        with tarfile.open(shards[1]) as tar:
            tar.getmembers()
