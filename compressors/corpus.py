"""compkit's shipped prompt corpus (compressors/data/prompts.jsonl): 32 texts of varied kinds and lengths,
authored for compkit. Used for int8 calibration, parity, demos and tests, so every clone has real text."""
from __future__ import annotations

import json
import os

PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "prompts.jsonl")


def prompts(path: str = PROMPTS) -> list[dict]:
    """[{"id", "kind", "text"}, ...]: the one reader of the shipped corpus (or another file of that form)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompt corpus not found: {path} (the shipped one comes with compkit; restore it from git)")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_texts(path: str = PROMPTS) -> list[str]:
    return [p["text"] for p in prompts(path)]
