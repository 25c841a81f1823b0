"""`herd eval caption` input handling and its baseline, without a model: JSONL manifests, shard
globs, and the most-frequent-training-caption baseline counted by hand."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from eval.caption import _shard_paths, most_frequent_caption, read_manifest_samples


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_most_frequent_caption_counts_every_reference(tmp_path):
    from data.shards import write_shards

    captions = [["a cat", "a small cat"], ["a dog"], ["a small cat"], ["a dog", "a small cat"]]
    write_shards(({"png": _png(), "json": {"captions": c}} for c in captions), tmp_path, "train", max_count=2)
    shards = sorted(tmp_path.glob("train-*.tar"))
    assert len(shards) == 2  # counted across shards: "a small cat" 3, "a dog" 2, "a cat" 1
    assert most_frequent_caption(shards) == "a small cat"
    assert most_frequent_caption([]) is None
    assert _shard_paths(str(tmp_path / "train-*.tar"), "ignored") == shards
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        _shard_paths(str(tmp_path / "nothing-*.tar"), "test")


def test_manifest_samples_resolve_paths_and_name_bad_lines(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "img/a.png", "captions": ["a red box"]}) + "\n\n")
    (sample,) = read_manifest_samples(manifest)
    assert sample["references"] == ["a red box"] and sample["image"].size == (20, 10)
    assert sample["id"] == "m-1" and sample["source"] == "manifest"
    manifest.write_text(json.dumps({"image": "img/a.png", "captions": ["x"]}) + "\n"
                        + json.dumps({"image": "img/missing.png", "captions": ["y"]}) + "\n")
    with pytest.raises(FileNotFoundError, match=r"m.jsonl:2: image not found"):
        list(read_manifest_samples(manifest))
    manifest.write_text('{"image": "img/a.png"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:1: needs 'image' and a non-empty 'captions'"):
        list(read_manifest_samples(manifest))
