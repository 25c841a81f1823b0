"""The run report reads every number from the run folder's files and says what is missing."""

from __future__ import annotations

import json

from eval.report import write_report


def test_report_reads_files_and_flags_missing_sections(tmp_path):
    run = tmp_path / "demo"
    (run / "data" / "images").mkdir(parents=True)
    (run / "data" / "images" / "manifest.json").write_text(json.dumps(
        {"splits": {"train": {"count": 1234}, "validation": {"count": 56}, "test": {"count": 78}}}))
    (run / "text_sft").mkdir()
    (run / "text_sft" / "metrics.jsonl").write_text(
        json.dumps({"step": 10, "loss": 3.5, "tokens_per_s": 1000.0}) + "\n"
        + json.dumps({"step": 10, "val_loss": 3.25, "val_ppl": 25.79}) + "\n")
    (run / "eval" / "caption").mkdir(parents=True)
    (run / "eval" / "caption" / "scores.json").write_text(json.dumps({"cider_d": 1.2345, "bleu_4": 0.5,
                                                                      "per_source": {"scene": 0.75}}))
    (run / "timings.json").write_text(json.dumps({"steps": {"text-sft": 120.0}, "total_s": 120.0}))

    text = write_report(run).read_text()
    assert "| images | 1234 | 56 | 78 |" in text
    assert "| cider_d | 1.234 |" in text and "| per_source.scene | 0.75 |" in text
    assert "val_loss 3.25" in text and "| text_sft | 10 | 3.5000" in text
    assert "| text-sft | 2.0 |" in text
    assert "Not evaluated (no `eval/asr/scores.json`)" in text
    assert (run / "text_sft" / "loss.png").is_file() and "text_sft/loss.png" in text
    html = (run / "report.html").read_text()
    assert "<table>" in html and "1.234" in html
