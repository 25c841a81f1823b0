"""External eval data: JSONL manifests, one sample a line, media paths relative to the manifest
(DESIGN "External data"): `{"image": "a.png", "captions": […]}`, `{"video": "c.mp4", …}`,
`{"audio": "u.wav", "text": "…"}`, `{"text": "…"}`.

    for record in read_manifest_lines("eval/set.jsonl", required=("image",), paths=("image",)):
        record["image"]   # an absolute Path that exists
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path


def read_manifest_lines(path: str | Path, *, required: Sequence[str] = (),
                        paths: Sequence[str] = ()) -> Iterator[dict]:
    """The manifest's records in order; `paths` keys resolved against the manifest's folder.

    Blank lines are skipped. A line that is not a JSON object, lacks a `required` key or names a
    missing file raises ValueError/FileNotFoundError naming the manifest and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object")
            missing = [k for k in required if k not in record]
            if missing:
                raise ValueError(f"{path}:{number}: missing key {missing[0]!r}")
            for key in paths:
                if key in record:
                    media = (path.parent / record[key]).resolve()
                    if not media.is_file():
                        raise FileNotFoundError(f"{path}:{number}: {key} file not found: {record[key]}")
                    record[key] = media
            yield record


__all__ = ["read_manifest_lines"]
