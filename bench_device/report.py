"""Benchmarks write their result twice: JSON for machines, markdown for docs/BENCHMARKS.md."""
from __future__ import annotations

import json
import os

from runtime_py.manifest import write_text_atomic


def atomic_write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text_atomic(path, text)


def write_report(stem: str, result: dict, markdown: str) -> tuple[str, str]:
    """stem without extension -> (stem.json, stem.md), each written atomically."""
    atomic_write(stem + ".json", json.dumps(result, indent=2, default=float, allow_nan=False) + "\n")  # numpy floats as floats, no NaN
    atomic_write(stem + ".md", markdown)
    return stem + ".json", stem + ".md"
