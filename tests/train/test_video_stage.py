"""`herd train video-adapter` runs a few steps in-process on clip shards; its batches, bad clips,
frozen set and checkpoint (llama3-spec §4)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from herd.cli import main as herd
from train_helpers import MICRO

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "video"))  # tests/ is not a package
from clip_shards import write_clip_shards  # noqa: E402

MICRO_REAL = [a for a in MICRO if not a.startswith("--model.vocab_size")]


@pytest.fixture(scope="module")
def clip_shards(tmp_path_factory) -> Path:
    return write_clip_shards(tmp_path_factory.mktemp("clips"), {"train": 12, "validation": 4, "test": 4},
                             bad=2, short=1)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, clip_shards, tiny_tokenizer_dir) -> Path:
    run = tmp_path_factory.mktemp("video_adapter")
    assert herd(["train", "video-adapter", *MICRO_REAL, f"--data.shards={clip_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
                 "--train.steps=6", "--optim.lr=3e-3", "--train.eval_batches=1", f"--run.dir={run}"]) == 0
    return run


def test_bad_clips_are_skipped_and_counted_short_clips_repeat_frames(clip_shards, tiny_tokenizer):
    from data.shards import split_shards
    from train.stages.video_batches import VideoBatcher

    batcher = VideoBatcher(split_shards(clip_shards, "train"), tiny_tokenizer, prompts=["Describe the motion."],
                           num_frames=8, tile_size=56, batch_size=5, epochs=1, shuffle=False)
    batches = list(batcher)
    assert sum(len(b["tokens"]) for b in batches) == 13  # 12 clips + the short one; the 2 bad ones skipped
    assert dict(batcher.skipped) == {"corrupt": 2}
    assert all(b["video"].shape[1:] == (8, 1, 3, 56, 56) for b in batches)
    short = batches[-1]["video"][-1, :, 0]  # read last in shard order: 3 frames spread over 8 slots
    assert torch.equal(short[0], short[1]) and not torch.equal(short[0], short[-1])


def test_loss_is_on_the_caption_and_its_eot_only(tiny_tokenizer):
    from train.stages.chat_data import IGNORE
    from train.stages.video_batches import VideoPrompt

    rows = VideoPrompt(tiny_tokenizer, ["Describe the motion."])
    meta = {"captions": ["a red square moves left"], "qa": [{"q": "How does the square move?", "a": "left"}]}
    tokens, targets = rows.training_row("k", meta)
    assert tokens.count(tiny_tokenizer.video_id) == 1 and len(targets) == len(tokens) - 1
    supervised = [t for t in targets if t != IGNORE]
    assert supervised == tiny_tokenizer.encode("a red square moves left") + [tiny_tokenizer.eot_id]
    assert supervised == tokens[-len(supervised):]
    replies = set()
    for epoch in range(8):  # with "qa" too, each epoch draws the caption or the QA pair
        tokens, targets = rows.training_row("k", meta, ("caption", "qa"), epoch)
        replies.add(tiny_tokenizer.decode([t for t in targets if t != IGNORE][:-1]))
    assert replies == {"a red square moves left", "left"}


def test_stage_trains_only_the_video_path_and_writes_a_loadable_checkpoint(video_run):
    from train.models import load_model

    rows = [json.loads(line) for line in (video_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in rows) and all(r.get("loss", 0) == r.get("loss", 0) for r in rows)
    assert all("video_gain" in r for r in rows if "val_loss" in r)  # real vs swapped clips
    ckpt = video_run / "checkpoints" / "step_00000006"
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["model"]["arch"] == "llama3-video"
    frozen = set(meta["frozen_checksums"])
    model, _ = load_model(ckpt)
    video = set(model.video_params())
    assert frozen == {n for n, _ in model.named_parameters()} - video  # LM and the whole image path
    assert any(n.startswith("vision_encoder.") for n in frozen) and "tok_embeddings.weight" in frozen
    gates = [p for n, p in model.video_params().items() if n.endswith("gate.scale")]
    assert gates and all(float(g.detach().abs()) > 0 for g in gates)  # the video gates opened


def test_a_video_checkpoint_continues_as_it_is(video_run):
    from train.config import load_config
    from train.stage_configs import VideoAdapterConfig
    from train.distributed import DistEnv
    from train.stages.video_adapter import build_model

    config = load_config(VideoAdapterConfig, None, [f"model.init={video_run}"])
    model, parents = build_model(config, DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")),
                                 1024)
    assert parents[0]["path"].endswith("step_00000006")
    assert set(n for n, p in model.named_parameters() if p.requires_grad) == set(model.video_params())


def test_cached_frame_features_equal_pixels_and_skip_decoding_on_later_epochs(clip_shards, tiny_tokenizer,
                                                                               monkeypatch):
    import train.stages.video_batches as vb
    from adapters.fusion import build_fusion_model
    from adapters.video_fusion import build_video_fusion_model
    from data.shards import split_shards
    from text.config import create_config as text_config
    from text.model import Transformer
    from video.config import create_config
    from video.frames import read_frames
    from vision.config import create_config as vision_config

    torch.manual_seed(0)
    lm = Transformer(text_config("tiny", vocab_size=1024, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                 multiple_of=32, max_seq_len=128))
    model = build_video_fusion_model(build_fusion_model(lm, vision_config("tiny")), create_config("tiny", dim=64))
    for name, p in model.video_params().items():
        if name.endswith("gate.scale"):
            p.data.fill_(0.5)
    reads = []
    monkeypatch.setattr(vb, "read_frames", lambda *a, **k: reads.append(1) or read_frames(*a, **k))

    def batches(features, epochs):
        return list(vb.VideoBatcher(split_shards(clip_shards, "train"), tiny_tokenizer, prompts=["Describe."],
                                    num_frames=8, tile_size=56, batch_size=13, features=features, epochs=epochs,
                                    shuffle=False))

    (pixels,) = batches(None, 1)
    assert len(reads) == 15  # 13 good clips and the 2 bad ones
    reads.clear()
    first, second = batches(vb.FrameFeatures(model), 2)
    assert len(reads) == 15 + 2  # the second epoch re-reads only the clips that never decoded
    assert "video" not in first and torch.equal(first["video_features"], second["video_features"])
    with torch.no_grad():
        from_pixels = model(pixels["tokens"], video=pixels["video"], video_ratio_ids=pixels["video_ratio_ids"])
        from_features = model(first["tokens"], video_features=first["video_features"])
    torch.testing.assert_close(from_features, from_pixels, rtol=1e-5, atol=1e-5)


def test_the_caption_word_loss_trains_its_head_with_the_video_path(tmp_path, clip_shards, tiny_tokenizer_dir):
    from train.models import load_model

    assert herd(["train", "video-adapter", *MICRO_REAL, f"--data.shards={clip_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=4",
                 "--train.steps=3", "--train.eval_every=0", "--video.word_weight=1.0", f"--run.dir={tmp_path}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["word_loss"] > 0 for r in rows if "loss" in r) and any("loss" in r for r in rows)
    ckpt = tmp_path / "checkpoints" / "step_00000003"
    model, meta = load_model(ckpt)
    assert meta["model"]["word_head"] and "video_word_head.proj.weight" in model.video_params()
    assert "video_word_head.proj.weight" not in meta["frozen_checksums"]
