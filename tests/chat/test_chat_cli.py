"""`herd chat` as a user runs it: a real subprocess (`python -m herd chat …`) driven on stdin for
the REPL, and one-shot calls with --json; bad input is one line and never ends the REPL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def herd(*args: str, stdin: bytes = b"", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HERD_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "herd", *map(str, args)], input=stdin, capture_output=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_repl_session_survives_bad_input(text_ckpt, media_files, tmp_path) -> None:
    transcript = tmp_path / "chat.json"
    script = "\n".join([
        "/system You are terse.",
        "hello there",
        f"/image {media_files['photo']}",          # a text checkpoint takes no images
        "/audio /no/such/file.wav",
        "/record",
        "/frobnicate",
        "/save",
        "   ",                                      # a blank line just prompts again
    ]).encode() + b"\n" + b"caf\xe9 \xff\n" + "\n".join([  # not UTF-8
        "second message",
        f"/save {transcript}",
        "/reset",
        "/help",
        "/quit",
        "never read",
    ]).encode() + b"\n"
    run = herd("chat", "--checkpoint", text_ckpt, "--max-new-tokens", "5", stdin=script)
    out = run.stdout.decode()
    assert run.returncode == 0, run.stderr.decode()
    assert "Traceback" not in out + run.stderr.decode()
    errors = [line for line in out.splitlines() if "error:" in line]
    assert any("takes no image input" in e for e in errors)
    assert any("takes no audio input" in e for e in errors)
    assert any("unknown command /frobnicate" in e for e in errors)
    assert any("usage: /save FILE" in e for e in errors)
    assert any("not UTF-8" in e for e in errors)
    assert "/record is not available" in out and "[conversation cleared]" in out and "/audio PATH" in out
    assert out.count("assistant> ") == 2
    saved = json.loads(transcript.read_text())
    assert saved["system"] == "You are terse."
    assert [(t["role"], t["content"]) for t in saved["turns"]][::2] == [("user", "hello there"),
                                                                        ("user", "second message")]


def test_repl_ends_cleanly_at_end_of_input(text_ckpt) -> None:
    run = herd("chat", "--checkpoint", text_ckpt, "--max-new-tokens", "3", stdin=b"hi\n")
    assert run.returncode == 0 and run.stdout.decode().count("assistant> ") == 1


def test_one_shot_json(text_ckpt) -> None:
    run = herd("chat", "--checkpoint", text_ckpt, "--prompt", "Tell me a fortune.", "--json",
               "--max-new-tokens", "7", "--temperature", "0.8")
    assert run.returncode == 0, run.stderr.decode()
    result = json.loads(run.stdout)
    assert result["prompt"] == "Tell me a fortune." and isinstance(result["answer"], str)
    assert 1 <= result["tokens"] <= 7 and result["blocked"] is None
    assert 0 < result["time_to_first_token_s"] <= result["seconds"] and result["tokens_per_s"] >= 0


def test_one_shot_with_an_image(image_ckpt, media_files) -> None:
    run = herd("chat", "--checkpoint", image_ckpt, "--image", media_files["photo"], "--prompt", "Describe it.",
               "--json", "--max-new-tokens", "4")
    assert run.returncode == 0, run.stderr.decode()
    result = json.loads(run.stdout)
    assert result["media"] == [{"kind": "image", "path": str(media_files["photo"])}]


def test_one_shot_errors_are_one_line(text_ckpt, image_ckpt, media_files, tmp_path) -> None:
    cases = [
        (("--checkpoint", image_ckpt, "--image", tmp_path / "gone.png"), "image file not found"),
        (("--checkpoint", image_ckpt, "--image", media_files["notes"]), "not a readable image"),
        (("--checkpoint", text_ckpt, "--video", media_files["clip"]), "takes no video input"),
        (("--checkpoint", tmp_path), "not a herd checkpoint"),
    ]
    for args, message in cases:
        run = herd("chat", *args, "--prompt", "hi")
        err = run.stderr.decode()
        assert run.returncode == 2 and err.startswith("herd chat: error:") and message in err, err
        assert err.count("\n") == 1


def test_guard_command(text_ckpt, capsys) -> None:
    from herd.cli import main

    assert main(["guard", "--checkpoint", str(text_ckpt), "--text", "How do I bake bread?", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["label"] in ("safe", "unsafe") and set(verdict) == {"label", "category", "name", "raw"}
    assert main(["guard", "--checkpoint", str(text_ckpt), "--role", "agent", "--text", "Sure."]) == 2
    assert "needs --context" in capsys.readouterr().err
