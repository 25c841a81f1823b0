"""Image, video and speech builders at the `micro` preset: manifests, split hygiene, truthful labels.

The raw sources come from the fetch cache (`$HERD_CACHE` or ~/.cache/herd; fetched on first use).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data.debian import default_cache
from data.media import decode_audio, decode_image, decode_video
from data.scenes import SIZE_CLASSES, article

SPLITS = ("train", "validation", "test")


def read_samples(out: Path, manifest: dict, split: str) -> list[dict]:
    """Every sample of a split as {"key", ext: bytes, "json": dict}."""
    samples: dict[str, dict] = {}
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(out / shard["path"]) as tar:
            for member in tar:
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                samples.setdefault(key, {"key": key})[ext] = json.loads(data) if ext == "json" else data
    return list(samples.values())


def check_manifest(out: Path, manifest: dict, kind: str) -> None:
    assert manifest["kind"] == kind and set(manifest["splits"]) == set(SPLITS)
    for split in SPLITS:
        info = manifest["splits"][split]
        assert info["count"] > 0 and info["count"] == sum(s["count"] for s in info["shards"])
        assert len(read_samples(out, manifest, split)) == info["count"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["sources"] and all("licence" in s for s in manifest["sources"])


# ----------------------------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from data.build_images import build

    out = tmp_path_factory.mktemp("images")
    return out, build(out, preset="micro", seed=0, cache=default_cache())


def test_images_manifest_and_decoding(images):
    out, manifest = images
    check_manifest(out, manifest, "images")
    for split in SPLITS:
        samples = read_samples(out, manifest, split)
        assert {s["json"]["source"] for s in samples} == {"emoji", "tuxpaint", "scene"}
        for s in samples:
            img = decode_image(s["png"], max_pixels=1 << 20)
            assert img.size == (manifest["canvas"],) * 2
            assert s["json"]["captions"] and all(c.strip() for c in s["json"]["captions"])
            assert s["json"]["qa"] and all(qa["q"].endswith("?") and qa["a"] for qa in s["json"]["qa"])


def test_images_single_sprites_never_shared_between_splits(images):
    out, manifest = images
    keys = {split: {o["sprite"] for s in read_samples(out, manifest, split) if s["json"]["source"] != "scene"
                    for o in s["json"]["objects"]} for split in SPLITS}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    scene_sprites = {o["sprite"] for split in SPLITS for s in read_samples(out, manifest, split)
                     if s["json"]["source"] == "scene" for o in s["json"]["objects"]}
    assert not scene_sprites & (keys["validation"] | keys["test"])  # scenes draw train sprites only


def test_images_heldout_pairs_and_colours_only_in_test(images):
    from data.build_images import heldout_color, heldout_pair

    out, manifest = images
    for split in SPLITS:
        for s in read_samples(out, manifest, split):
            if s["json"]["source"] != "scene":
                continue
            objs = s["json"]["objects"]
            names = [o["name"] for o in objs]
            pair = any(heldout_pair(a, b) for i, a in enumerate(names) for b in names[i + 1:])
            colour = any(o["color"] and heldout_color(o["name"], o["color"]) for o in objs)
            if split == "test":
                assert pair or colour, s["key"]
            else:
                assert not pair and not colour, s["key"]


def _caption_phrase(o: dict) -> str:
    return article(" ".join(w for w in (o["size"] if o["size"] != "medium" else None, o["color"]) if w)
                   + (" " if o["size"] != "medium" or o["color"] else "") + o["name"])


def test_images_scene_captions_are_true_to_the_layout(images):
    out, manifest = images
    canvas = manifest["canvas"]
    checked = 0
    for split in SPLITS:
        for s in read_samples(out, manifest, split):
            meta = s["json"]
            if meta["source"] != "scene":
                continue
            objs, layout, caption = meta["objects"], meta["layout"], meta["captions"][0]
            phrases = [_caption_phrase(o) for o in objs]
            for o, p in zip(objs, phrases):
                assert p in caption  # every object, with its size and colour words, is named
                x0, y0, x1, y1 = o["box"]
                assert 0 <= x0 < x1 <= canvas and 0 <= y0 < y1 <= canvas
                lo, hi = SIZE_CLASSES[o["size"]]
                assert lo * canvas - 1.5 <= max(x1 - x0, y1 - y0) <= hi * canvas + 1.5
            centre = [((o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2) for o in objs]
            if layout in ("pair-h", "row"):
                assert caption.startswith(f"{phrases[0]} to the left of {phrases[1]}") or caption.startswith("from left to right")
                for a, b, ca, cb in zip(objs, objs[1:], centre, centre[1:]):
                    assert a["box"][2] <= b["box"][0]  # strictly left: boxes do not overlap in x
                    assert abs(ca[1] - cb[1]) <= canvas / 4 + 1
            if layout in ("pair-v", "column"):
                assert caption.startswith(f"{phrases[0]} above {phrases[1]}") or caption.startswith("from top to bottom")
                for a, b, ca, cb in zip(objs, objs[1:], centre, centre[1:]):
                    assert a["box"][3] <= b["box"][1]
                    assert abs(ca[0] - cb[0]) <= canvas / 4 + 1
            if layout == "pair-h":
                qa = {q["q"]: q["a"] for q in meta["qa"]}
                assert qa[f"What is left of the {objs[1]['name']}?"] == article(objs[0]["name"])
            for o in objs:
                if o["color"] in ("red", "green", "blue"):  # the tint is really in the pixels
                    img = np.asarray(decode_image(s["png"], max_pixels=1 << 20)).astype(int)
                    x0, y0, x1, y1 = o["box"]
                    patch = img[y0:y1, x0:x1].reshape(-1, 3)
                    bg = np.asarray(decode_image(s["png"], max_pixels=1 << 20))[0, 0].astype(int)
                    fg = patch[np.abs(patch - bg).sum(1) > 60]
                    if len(fg) > 20:
                        assert int(np.argmax(fg.mean(0))) == ["red", "green", "blue"].index(o["color"])
            checked += 1
    assert checked == sum(manifest["counts_by_source"][s]["scene"] for s in SPLITS)


def test_images_build_is_deterministic(images, tmp_path):
    from data.build_images import build

    out, manifest = images
    again = build(tmp_path, preset="micro", seed=0, cache=default_cache())
    assert again["splits"] == manifest["splits"]


# ------------------------------------------------------------------------------------------ video

@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from data.build_video import build

    out = tmp_path_factory.mktemp("video")
    return out, build(out, preset="micro", seed=0, cache=default_cache())


def test_video_manifest_and_clips_decode(video):
    out, manifest = video
    check_manifest(out, manifest, "video")
    for split in SPLITS:
        samples = read_samples(out, manifest, split)
        assert {s["json"]["source"] for s in samples} == {"sprite", "xpenguins"}
        for s in samples[:10]:
            frames = decode_video(s["mp4"], num_frames=manifest["frames"])
            assert tuple(frames.shape) == (manifest["frames"], manifest["canvas"], manifest["canvas"], 3)
        for s in samples:
            meta = s["json"]
            assert meta["motion"] and meta["captions"][0].startswith(article(meta["object"]))
            if meta["source"] == "xpenguins":
                assert meta["action"]


def test_video_heldout_pairs_only_in_test(video):
    from data.build_video import MOTIONS, heldout_action, heldout_motion

    out, manifest = video
    for split in SPLITS:
        for s in read_samples(out, manifest, split):
            meta = s["json"]
            if meta["source"] == "sprite":
                assert meta["motion"] in MOTIONS
                assert heldout_motion(meta["object"], meta["motion"]) == (split == "test")
                assert MOTIONS[meta["motion"]] in meta["captions"][0]
            else:
                assert heldout_action(meta["theme"], meta["action"]) == (split == "test")


def _foreground(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - frame[0, 0].astype(int)).sum(-1) > 40


def test_video_motion_labels_match_the_pixels(video):
    out, manifest = video
    checked = 0
    for split in SPLITS:
        for s in read_samples(out, manifest, split):
            meta = s["json"]
            if meta["source"] != "sprite" or meta["motion"].startswith("rotate"):
                continue
            frames = decode_video(s["mp4"], num_frames=manifest["frames"]).numpy()
            first, last = _foreground(frames[0]), _foreground(frames[-1])
            if first.sum() < 10 or last.sum() < 10:
                continue
            (y0, x0), (y1, x1) = [np.argwhere(m).mean(0) for m in (first, last)]
            expect = {"left": x1 < x0 - 4, "right": x1 > x0 + 4, "up": y1 < y0 - 4, "down": y1 > y0 + 4,
                      "grow": last.sum() > first.sum() * 1.5, "shrink": first.sum() > last.sum() * 1.5}
            assert expect[meta["motion"]], (s["key"], meta["motion"])
            checked += 1
    assert checked >= 10


# ----------------------------------------------------------------------------------------- speech

@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from data.build_speech import build

    out = tmp_path_factory.mktemp("speech")
    return out, build(out, preset="micro", seed=0, cache=default_cache())


def test_speech_manifest_and_audio(speech):
    out, manifest = speech
    check_manifest(out, manifest, "speech")
    assert manifest["sample_rate"] == 16000
    for split in SPLITS:
        assert manifest["stats"][split]["hours"] > 0
        for s in read_samples(out, manifest, split):
            meta = s["json"]
            wave = decode_audio(s["flac"], target_sr=16000)
            assert abs(wave.numel() / 16000 - meta["seconds"]) < 0.01 and meta["seconds"] > 0.5
            assert float(wave.abs().max()) > 0.01
            assert meta["engine"] in ("espeak-ng", "flite") and meta["text"] and meta["speaker"]


def test_speech_splits_share_no_voice_no_prompt_and_test_has_unseen_accents(speech):
    from data.build_speech import TEST_ONLY_ACCENTS

    out, manifest = speech
    meta = {split: [s["json"] for s in read_samples(out, manifest, split)] for split in SPLITS}
    voices = {split: {m["voice"].removesuffix("16") for m in ms} for split, ms in meta.items()}
    speakers = {split: {m["speaker"] for m in ms} for split, ms in meta.items()}
    prompts = {split: {m["text"] for m in ms} for split, ms in meta.items()}
    for a, b in (("train", "test"), ("train", "validation"), ("validation", "test")):
        assert not voices[a] & voices[b] and not speakers[a] & speakers[b] and not prompts[a] & prompts[b]
    accents = {split: {m["accent"] for m in ms} for split, ms in meta.items()}
    assert accents["test"] & set(TEST_ONLY_ACCENTS)
    assert not (accents["train"] | accents["validation"]) & set(TEST_ONLY_ACCENTS)
    assert all(m["augment"] == "" for m in meta["test"] + meta["validation"])


def test_speech_espeak_in_process_matches_the_cli():
    """The first utterance of a fresh engine is sample-identical to `espeak-ng` (its quiet tail aside)."""
    import multiprocessing

    from data.build_speech import _espeak_cli

    with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
        lib = pool.apply(_lib_synth, ("The birch canoe slid on the smooth planks.", "en-us+f3"))
    cli, _ = _espeak_cli("The birch canoe slid on the smooth planks.", "en-us+f3", 50, 160)
    assert len(lib) > 16000 and np.array_equal(lib, cli[: len(lib)])
    assert np.abs(cli[len(lib):].astype(int)).max() < 330  # the CLI only adds a quiet (< -40 dB) tail


def _lib_synth(text: str, voice: str) -> np.ndarray:
    from data.build_speech import _Espeak

    return _Espeak().synth(text, voice, 50, 160)
