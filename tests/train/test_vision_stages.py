"""The image stages on micro data: `vision-clip` then `vision-adapter` a few steps each, in-process.

Fixture data: coloured shapes on 64-px canvases, square and wide (so batches mix aspect ratios),
captioned "a red square" with one QA pair, written as image shards like `data/build_images.py`.
The frozen LM is a random micro LM saved as a text checkpoint.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from herd.cli import main as herd
from train_helpers import MICRO

MICRO_IMAGES = [a for a in MICRO if not a.startswith(("--model.", "--data.seq_len"))]
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 210, 20)}
SHAPES = ("square", "circle")


def _box(wide: bool) -> tuple[int, int, int, int]:
    return (8, 4, 40, 28) if wide else (12, 12, 52, 52)


def _png(colour: str, shape: str, wide: bool) -> bytes:
    image = Image.new("RGB", (64, 32) if wide else (64, 64), (245, 245, 240))
    (ImageDraw.Draw(image).rectangle if shape == "square" else ImageDraw.Draw(image).ellipse)(_box(wide), COLOURS[colour])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _samples(n: int, offset: int):
    for i in range(offset, offset + n):
        colour, shape = list(COLOURS)[i % 4], SHAPES[(i // 4) % 2]
        yield {"png": _png(colour, shape, wide=i % 3 == 0),
               "json": {"captions": [f"a {colour} {shape}"], "source": "shapes",
                        "qa": [{"q": "What colour is the shape?", "a": colour}],
                        "objects": [{"name": shape, "color": colour, "box": list(_box(i % 3 == 0))}]}}


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory) -> Path:
    from data.shards import write_manifest, write_shards

    root = tmp_path_factory.mktemp("images")
    splits = {"train": write_shards(_samples(32, 0), root, "train"),
              "validation": write_shards(_samples(8, 100), root, "validation")}
    write_manifest(root, kind="images", splits=splits, sources=[])
    return root


@pytest.fixture(scope="module")
def text_lm(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random micro LM saved as a text checkpoint (what `text-sft` would hand over)."""
    from text.config import create_config
    from text.model import Transformer
    from train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    lm = Transformer(create_config("tiny", vocab_size=1024, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                                   multiple_of=32, max_seq_len=256))
    path = tmp_path_factory.mktemp("lm") / "step_00000001"
    save_checkpoint(path, lm.state_dict(), {"stage": "text-sft", "step": 1, "model": lm.spec()},
                    tokenizer=tiny_tokenizer_dir / "tokenizer.json")
    return path


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory, image_shards, tiny_tokenizer_dir) -> Path:
    run = tmp_path_factory.mktemp("clip")
    assert herd(["train", "vision-clip", *MICRO_IMAGES, f"--data.shards={image_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=8",
                 "--clip.text_width=32", "--clip.text_layers=1", "--clip.embed_dim=16", "--train.steps=8",
                 "--train.eval_batches=1", "--optim.lr=3e-3", f"--run.dir={run}"]) == 0
    return run


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory, image_shards, text_lm, clip_run) -> Path:
    run = tmp_path_factory.mktemp("adapter")
    assert herd(["train", "vision-adapter", *MICRO_IMAGES, f"--model.init={text_lm}",
                 f"--vision.encoder_init={clip_run}", "--vision.cross_attention_every=1", "--vision.pack=3",
                 f"--data.shards={image_shards}", "--data.batch_size=8", "--data.seq_len=48",
                 "--train.steps=10", "--train.eval_batches=1", "--optim.lr=3e-3", f"--run.dir={run}"]) == 0
    return run


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_clip_stage_trains_and_reloads(clip_run, tiny_tokenizer):
    from train.models import load_model

    losses = [r["loss"] for r in _rows(clip_run) if "loss" in r]
    assert losses[-1] < losses[0]
    val = [r for r in _rows(clip_run) if "i2t_R@1" in r][-1]
    assert {"val_loss", "i2t_R@5", "t2i_R@1", "t2i_R@5"} <= set(val)
    model, meta = load_model(clip_run)
    assert meta["model"]["arch"] == "clip" and meta["stage"] == "vision-clip"
    assert model.text.token_embedding.num_embeddings == tiny_tokenizer.vocab_size
    assert (Path(clip_run) / "checkpoints" / "latest").is_file()


def test_adapter_stage_trains_only_the_adapter(adapter_run, text_lm, clip_run):
    from adapters.fusion import FUSION_MODULES
    from train.checkpoint import load_tensors
    from train.models import load_model

    losses = [r["loss"] for r in _rows(adapter_run) if "loss" in r]
    assert losses[-1] < losses[0]
    model, meta = load_model(adapter_run)
    assert meta["model"]["arch"] == "llama3-vision" and hasattr(model, "attach_images")
    assert [Path(p["path"]).name for p in meta["parents"]] == [text_lm.name, "step_00000008"]
    ckpt = Path(meta["parents"][0]["path"])
    state = model.state_dict()
    lm_state = load_tensors(ckpt)
    assert set(state) - set(lm_state) == model.adapter_state_keys()
    assert all(torch.equal(state[k], v) for k, v in lm_state.items())  # the LM did not move
    assert meta["frozen_checksums"] and all(k.split(".")[0] not in FUSION_MODULES for k in meta["frozen_checksums"])
    clip, _ = load_model(clip_run)
    trained = model.vision_encoder.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in clip.encoder.state_dict().items())  # encoder trained
    tokenizer = Path(meta["config"]["run"]["dir"]) / "checkpoints" / "latest"
    assert (tokenizer.parent / tokenizer.read_text().strip() / "tokenizer.json").is_file()
    assert "generated:" in (adapter_run / "samples.txt").read_text()
    evals = [r for r in _rows(adapter_run) if "val_loss" in r]
    assert evals and all("image_gain" in r for r in evals)  # real vs swapped images, every evaluation


def test_prompt_answers_first_caption_and_qa():
    from train.stages.image_batches import prompt_answers

    meta = {"captions": ["a dog left of a cat", "a cat right of a dog"], "qa": [{"q": "What colour?", "a": "red"}]}
    assert prompt_answers(meta, ["caption"], "Describe.") == [("Describe.", c) for c in meta["captions"]]
    assert prompt_answers(meta, ["caption", "qa"], "Describe.", "first") == [
        ("Describe.", "a dog left of a cat"), ("What colour?", "red")]
    with pytest.raises(ValueError, match="unknown caption choice 'best'"):
        prompt_answers(meta, ["caption"], "Describe.", "best")


def test_caption_eval_writes_scores_and_refuses_clip(adapter_run, clip_run, image_shards, tmp_path, capsys):
    pytest.importorskip("pycocoevalcap")
    import shutil

    if shutil.which("java") is None:
        pytest.skip("PTB tokenizer needs java")
    out = tmp_path / "caption"
    assert herd(["eval", "caption", "--checkpoint", str(adapter_run), "--shards", str(image_shards),
                 "--split", "validation", "--out", str(out), "--batch-size", "3", "--max-new-tokens", "6"]) == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n"] == 8 and {"CIDEr-D", "BLEU-4", "exact_match"} <= set(scores["model"])
    assert scores["baseline"]["caption"].startswith("a ")  # the most frequent *training* caption
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == sorted(x["id"] for x in lines) and len(lines) == 8
    assert (out / "grid.png").stat().st_size > 0
    capsys.readouterr()
    assert herd(["eval", "caption", "--checkpoint", str(clip_run), "--shards", str(image_shards),
                 "--out", str(tmp_path / "x")]) != 0
    assert "is a clip checkpoint; caption eval needs a vision-adapter checkpoint" in capsys.readouterr().err


def _chat_batcher(image_shards, tokenizer, **kw):
    from data.shards import split_shards
    from train.stages.image_batches import ImageChatBatcher
    from vision.transforms import ImageTransform

    return ImageChatBatcher(split_shards(image_shards, "train"), tokenizer, ImageTransform(56, 4), seq_len=64,
                            tasks=["caption", "qa"], describe="Describe the image.", batch_size=6, **kw)


def test_caption_batches_carry_each_grounded_object_with_its_patches_and_phrase(image_shards, tiny_tokenizer):
    from train.stages.image_batches import CaptionBatcher
    from data.shards import split_shards
    from vision.transforms import ImageTransform

    batcher = CaptionBatcher(split_shards(image_shards, "train"), tiny_tokenizer, ImageTransform(56, 4),
                             context_length=16, batch_size=8, region_patch=14)
    batch = next(iter(batcher))
    assert batch["region_image"].tolist() == list(range(8))  # one object per image
    assert batch["region_mask"].shape == (8, 4, 17) and not batch["region_mask"][:, :, 0].any()
    phrases = [tiny_tokenizer.decode([t for t in row.tolist() if t not in (tiny_tokenizer.pad_id, tiny_tokenizer.eot_id)])
               for row in batch["region_tokens"]]
    assert all(p.startswith("a ") and p.split()[-1] in SHAPES for p in phrases)
    ids = batch["region_phrase"].tolist()
    assert all((ids[i] == ids[j]) == (phrases[i] == phrases[j]) for i in range(8) for j in range(8))
    plain = CaptionBatcher(split_shards(image_shards, "train"), tiny_tokenizer, ImageTransform(56, 4),
                           context_length=16, batch_size=8)
    assert not any(k.startswith("region_") for k in next(iter(plain)))


def test_clip_stage_with_regions_logs_both_losses(image_shards, tiny_tokenizer_dir, tmp_path):
    assert herd(["train", "vision-clip", *MICRO_IMAGES, f"--data.shards={image_shards}",
                 f"--data.tokenizer={tiny_tokenizer_dir / 'tokenizer.json'}", "--data.batch_size=8",
                 "--clip.text_width=32", "--clip.text_layers=1", "--clip.embed_dim=16", "--train.steps=3",
                 "--train.eval_every=0", "--clip.region_weight=1.0", f"--run.dir={tmp_path}"]) == 0
    rows = [r for r in _rows(tmp_path) if "loss" in r]
    assert rows and all(abs(r["loss"] - r["clip_loss"] - r["region_loss"]) < 1e-4 for r in rows)


def test_chat_batches_mix_aspect_ratios_and_supervise_the_answer_only(image_shards, tiny_tokenizer):
    from text.chat_format import ChatFormat
    from train.stages.image_batches import IGNORE

    batch = next(iter(_chat_batcher(image_shards, tiny_tokenizer, seed=1)))
    tokens, targets, images, ratio_ids = batch["tokens"], batch["targets"], batch["images"], batch["ratio_ids"]
    assert images.shape == (6, 1, 4, 3, 56, 56) and ratio_ids.shape == (6, 1)
    # 64×64 → a 2×2 canvas (ratio id 6 of max_tiles 4); 64×32 → 1×2 (id 2) whose tiles 2–3 are padding.
    assert set(ratio_ids[:, 0].tolist()) == {2, 6}
    assert images[ratio_ids[:, 0] == 2][:, 0, 2:].abs().sum() == 0
    chat = ChatFormat(tiny_tokenizer)
    at, assistant = 1 + len(chat.encode_header("user")), chat.encode_header("assistant")
    assert (tokens[:, at] == tiny_tokenizer.image_id).all()
    assert ((tokens == tiny_tokenizer.image_id).sum(1) == 1).all()
    for row, target in zip(tokens, targets):
        supervised = target[target != IGNORE].tolist()
        assert supervised[-1] == tiny_tokenizer.eot_id
        answer = tiny_tokenizer.decode(supervised[:-1])
        assert answer in {"red", "green", "blue", "yellow"} or answer.startswith("a ")
        first = int((target != IGNORE).nonzero()[0])  # the prompt ends with the assistant header
        assert row[first + 1 - len(assistant):first + 1].tolist() == assistant


def test_packed_chat_batches_hold_the_same_samples_and_give_the_same_loss(image_shards, tiny_tokenizer):
    """The same samples packed as documents give the loss of one padded row each, because every
    document attends only itself and its own image (a leak of the previous document's image into
    the next document's prompt would change it), with fewer token slots."""
    from adapters.fusion import FusionConfig, build_fusion_model
    from text.config import create_config
    from text.model import Transformer
    from train.stages.text_common import supervised_loss
    from train.stages.vision_adapter import VisionAdapterUnit
    from vision.config import create_config as vision_config

    padded = next(iter(_chat_batcher(image_shards, tiny_tokenizer, seed=3)))
    packed = next(iter(_chat_batcher(image_shards, tiny_tokenizer, seed=3, pack=3)))
    assert packed["tokens"].numel() < padded["tokens"].numel()
    assert packed["images"].shape[1] <= 3 and int((packed["ratio_ids"] > 0).sum()) == 6
    assert (packed["tokens"] == tiny_tokenizer.image_id).sum() == 6
    assert sorted(packed["targets"][packed["targets"] >= 0].tolist()) == sorted(padded["targets"][padded["targets"] >= 0].tolist())
    torch.manual_seed(0)
    lm = Transformer(create_config("tiny", vocab_size=tiny_tokenizer.vocab_size, dim=64, n_layers=2, n_heads=4,
                                   n_kv_heads=2, multiple_of=32, max_seq_len=256))
    model = build_fusion_model(lm, vision_config("tiny"), FusionConfig(cross_attention_every=1)).eval()
    for name, p in model.named_parameters():
        if name.endswith(("gate.scale", "gate")):  # open every gate: the image reaches the text
            p.data.fill_(0.5)
    with torch.no_grad():
        losses = [float(supervised_loss(lambda at: VisionAdapterUnit.logits(model, b, at), b["targets"]).loss)
                  for b in (padded, packed)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_chat_batcher_resumes_exactly(image_shards, tiny_tokenizer):
    first = _chat_batcher(image_shards, tiny_tokenizer, seed=2)
    it = iter(first)
    next(it)
    state = first.state_dict()
    expected = [next(it) for _ in range(7)]  # crosses an epoch boundary (32 samples, 6 a batch)
    resumed = _chat_batcher(image_shards, tiny_tokenizer, seed=2)
    resumed.load_state_dict(state)
    it = iter(resumed)
    for want in expected:
        got = next(it)
        assert all(torch.equal(got[k], want[k]) for k in want)
