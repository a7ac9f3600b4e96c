"""Benchmarks write their result twice: JSON for machines, markdown for docs/BENCHMARKS.md."""
from __future__ import annotations

import json
import os
import tempfile


def atomic_write(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_report(stem: str, result: dict, markdown: str) -> tuple[str, str]:
    """stem without extension -> (stem.json, stem.md), each written atomically."""
    atomic_write(stem + ".json", json.dumps(result, indent=2, default=float) + "\n")
    atomic_write(stem + ".md", markdown)
    return stem + ".json", stem + ".md"
