"""`resolve_checkpoint`: users pass a checkpoint dir, a run folder or its `latest` pointer."""

from __future__ import annotations

import pytest

from herd.cli import main
from train.checkpoint import load_text_model, resolve_checkpoint


def test_run_folder_latest_pointer_and_directory_resolve_to_the_same_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000007"
    assert main(["init", "--preset", "tiny", "--vocab-size", "512", "--out", str(ckpt)]) == 0
    (ckpt.parent / "latest").write_text("step_00000007\n")
    for given in (ckpt, ckpt.parent / "latest", ckpt.parent, tmp_path / "run"):
        assert resolve_checkpoint(given) == ckpt
    assert load_text_model(tmp_path / "run").config.vocab_size == 512


def test_a_folder_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="not a herd checkpoint"):
        resolve_checkpoint(tmp_path)
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a herd checkpoint" in err
