"""The human-readable curation report: kept / removed per filter and split, with examples."""

from __future__ import annotations

__all__ = ["markdown_report"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ⏎ ")[:160]


def markdown_report(report: dict) -> str:
    splits = report["splits"]
    filters = list(next(iter(splits.values()))["removed"]) if splits else []
    lines = ["# Curation report", "", "| split | input | kept | " + " | ".join(filters) + " |",
             "|---|---:|---:|" + "---:|" * len(filters)]
    for name, s in splits.items():
        lines.append(f"| {name} | {s['input']} | {s['kept']} | " + " | ".join(str(s["removed"][f]) for f in filters) + " |")
    lines += ["", "## Rewrites and statistics", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(report.get("stats", {}).items())]
    if report.get("unreadable_samples"):
        lines.append(f"- unreadable input samples: {report['unreadable_samples']}")
    lines += [f"- seconds: {report.get('seconds', {})}", "", "## Examples", ""]
    for name, items in report.get("examples", {}).items():
        lines.append(f"### {name}")
        lines.append("")
        for item in items:
            detail = f" ({item['detail']})" if item.get("detail") else ""
            lines.append(f"- `{item['split']}/{item['key']}`{detail}: {_cell(item['text'])}")
        lines.append("")
    lines += ["## Settings", "", "```", *(f"{k} = {v!r}" for k, v in report["config"].items()), "```", ""]
    return "\n".join(lines)
