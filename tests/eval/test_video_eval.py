"""`herd eval video`: motion parsing, and the CLI on a micro video-adapter checkpoint with shards
and with a manifest holding a bad clip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from herd.cli import main as herd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "video"))  # tests/ is not a package
from clip_shards import square_clip, write_clip_shards  # noqa: E402

MICRO = ["--model.dim=64", "--model.n_layers=2", "--model.n_heads=4", "--model.n_kv_heads=2", "--run.progress=false",
         "--train.dtype=fp32", "--optim.warmup_steps=1"]


@pytest.mark.parametrize("caption, motion", [
    ("a giraffe moves left", "left"), ("a cat that moves right", "right"), ("a penguin climbs up", "up"),
    ("a man falls down", "down"), ("a turtle floats down under a balloon", "down"),
    ("a penguin rises as an angel", "up"),
    ("a bee grows", "grow"), ("a bee shrinks", "shrink"), ("a fox turns clockwise", "rotate_cw"),
    ("a fox turns counterclockwise", "rotate_ccw"), ("a penguin reads a book", "none"), ("", "none")])
def test_parse_motion(caption, motion):
    from eval.video import parse_motion

    assert parse_motion(caption) == motion


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_tokenizer_dir) -> tuple[Path, Path]:
    shards = write_clip_shards(tmp_path_factory.mktemp("clips"), {"train": 8, "validation": 2, "test": 5})
    run = tmp_path_factory.mktemp("video_adapter")
    assert herd(["train", "video-adapter", *MICRO, f"--data.shards={shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
                 "--train.steps=2", "--train.eval_batches=1", f"--run.dir={run}"]) == 0
    return run, shards


def test_eval_on_shards_writes_scores_samples_and_strip(checkpoint, tmp_path):
    run, shards = checkpoint
    out = tmp_path / "eval"
    assert herd(["eval", "video", "--checkpoint", str(run), "--shards", str(shards), "--split", "test",
                 "--out", str(out), "--max-new-tokens", "6", "--batch-size", "3"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n"] == scores["n_motion_labels"] == 5 and scores["skipped"] == 0 and scores["frames"] == 8
    for key in ("motion_accuracy", "single_frame_motion_accuracy", "image_model_motion_accuracy", "cider_d", "bleu_4"):
        assert isinstance(scores[key], float), key
    assert set(scores["by_motion"]) == {"left", "right"}
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"test-{i:05d}" for i in range(5)]
    assert {"video", "single_frame", "image_model", "video_motion", "references", "CIDEr-D"} <= set(rows[0])
    assert (out / "strip.png").stat().st_size > 0


def test_eval_on_a_manifest_skips_and_counts_a_bad_clip(checkpoint, tmp_path):
    from data.build_video import encode_mp4

    run, _ = checkpoint
    (tmp_path / "good.mp4").write_bytes(encode_mp4(square_clip("blue", "right")))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    lines = [{"video": "good.mp4", "captions": ["a blue square moves right"], "motion": "right"},
             {"video": "bad.mp4", "captions": ["x"], "id": "broken"}]
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval"
    assert herd(["eval", "video", "--checkpoint", str(run), "--manifest", str(manifest), "--out", str(out),
                 "--max-new-tokens", "4"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n"] == 1 and scores["skipped"] == 1 and scores["skipped_ids"] == ["broken"]
