"""compkit's shipped prompt corpus (compressors/data/prompts.jsonl): 32 texts of varied kinds and lengths,
authored for compkit. Used for int8 calibration, parity, demos and tests, so every clone has real text."""
from __future__ import annotations

import json
import os

PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prompts.jsonl")


def prompts() -> list[dict]:
    """[{"id", "kind", "text"}, ...]"""
    with open(PROMPTS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_texts() -> list[str]:
    return [p["text"] for p in prompts()]
