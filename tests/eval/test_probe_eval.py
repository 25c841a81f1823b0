"""`herd eval probe` (eval/probe.py): the probe on features that do and do not carry the label, and
the command end to end on a random CLIP checkpoint (box → patches: tests/vision/test_transforms.py)."""

from __future__ import annotations

import io
import json

import torch
from PIL import Image, ImageDraw

from eval.probe import fit_linear_probe
from herd.cli import main as herd


def test_the_probe_reads_a_label_the_features_carry_and_not_one_they_lack():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    carried = 3 * torch.eye(4)[y] @ torch.randn(4, 16, generator=g) + torch.randn(400, 16, generator=g)
    noise = torch.randn(400, 16, generator=g)
    for x, low, high in ((carried, 0.95, 1.0), (noise, 0.0, 0.4)):
        classify = fit_linear_probe(x[:300], y[:300], 4)
        accuracy = (classify(x[300:]) == y[300:]).float().mean().item()
        assert low <= accuracy <= high


def _shape_samples(n: int, offset: int):
    for i in range(offset, offset + n):
        name = ("square", "circle")[i % 2]
        x0, y0 = 4 + 3 * (i % 5), 6 + 2 * (i % 7)
        box = [x0, y0, x0 + 24, y0 + 24]
        image = Image.new("RGB", (64, 64), (245, 245, 240))
        (ImageDraw.Draw(image).rectangle if name == "square" else ImageDraw.Draw(image).ellipse)(box, (200, 40, 40))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        yield {"png": buf.getvalue(), "json": {"captions": [f"a red {name}"], "source": "scene",
                                               "objects": [{"name": name, "box": box}]}}


def test_probe_command_scores_a_clip_checkpoint_against_a_random_encoder(tmp_path, capsys):
    from data.shards import write_manifest, write_shards
    from train.checkpoint import save_checkpoint
    from vision.clip import ClipModel, TextTower
    from vision.config import create_config
    from vision.encoder import build_encoder

    shards = tmp_path / "images"
    write_manifest(shards, kind="images", sources=[],
                   splits={"train": write_shards(_shape_samples(24, 0), shards, "train"),
                           "test": write_shards(_shape_samples(8, 100), shards, "test")})
    torch.manual_seed(1)
    clip = ClipModel(build_encoder(create_config("tiny", max_tiles=1)), TextTower(vocab_size=64, embed_dim=16,
                                                                              width=32, n_layers=1), 16)
    ckpt = tmp_path / "clip" / "step_00000001"
    save_checkpoint(ckpt, clip.state_dict(), {"stage": "vision-clip", "step": 1, "model": clip.spec()})

    out = tmp_path / "probe"
    assert herd(["eval", "probe", "--checkpoint", str(ckpt), "--shards", str(shards), "--out", str(out)]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["classes"] == 2 and scores["objects_train"] == 24 and scores["objects_test"] == 8
    assert scores["chance"] == 0.5 and scores["majority"] == 0.5
    for key in ("probe_accuracy", "random_encoder_accuracy", "probe_train_accuracy"):
        assert 0.0 <= scores[key] <= 1.0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["name"] for r in rows} == {"square", "circle"}
    assert "random encoder" in capsys.readouterr().out


def test_object_features_tile_images_as_the_encoder_does():
    from vision.config import create_config
    from vision.encoder import build_encoder
    from eval.probe import object_features

    torch.manual_seed(0)
    encoder = build_encoder(create_config("tiny")).eval()  # up to 4 tiles of 56 px
    images = [Image.new("RGB", (64, 64), (200, 40, 40)), Image.new("RGB", (128, 64), (40, 40, 200))]
    features = object_features(encoder, images, [[(0, 0, 30, 30), (60, 60, 61, 61)], [(70, 0, 120, 50)]])
    assert [[f is not None for f in row] for row in features] == [[True, False], [True]]
    assert all(f.shape == (encoder.config.output_dim,) for f in (features[0][0], features[1][0]))
