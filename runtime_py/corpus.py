"""The parity corpus: real-text prompts for MOOSComp, representative visual/text token sets for EvoComp.

Prompts come from the corpus shipped in the repo (compressors/data/prompts.jsonl, one {"text": ...} per line)
and optionally GSM8K (question + worked answer, the kind of prompt MOOSComp was evaluated on).

EvoComp token sets are generated, seeded, because no MLLM runs here. They imitate what an MLLM's projector
hands EvoComp rather than white noise, since white noise makes every token equally (un)interesting and
top-k decisions then hang on near-ties that no real image produces:
- visual tokens on the model's raster grid: a few "objects" (2-D Gaussian blobs on the grid, each with its own
  feature direction), a smooth background direction, per-token noise, and 1-4 high-norm "sink" tokens like
  the artifact / register tokens ViTs are known to produce;
- a question of random length (4..T tokens, the rest padded and masked): a few tokens point at one of the
  objects' directions (the thing asked about), the rest are generic word vectors.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from compressors.corpus import PROMPTS as DEFAULT_PROMPTS


class CorpusError(ValueError):
    """A corpus file that cannot be read; one line naming the file and the fix."""


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise CorpusError(f"parity corpus not found: {path}; pass --prompts PATH (a .jsonl with one {{\"text\": ...}} per line)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise CorpusError(f"{path}:{n}: not a JSON line") from None
    return rows


def load_prompts(path: str = DEFAULT_PROMPTS) -> list[str]:
    rows = _read_jsonl(path)
    texts = [r.get("text") for r in rows if isinstance(r, dict)]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise CorpusError(f"{path}: every line needs a non-empty \"text\" string")
    return texts


def load_gsm8k(path: str, limit: int = 20) -> list[str]:
    """The first `limit` GSM8K test items as question + worked answer (the official test.jsonl format)."""
    rows = _read_jsonl(path)[:limit]
    if not rows or not all(isinstance(r, dict) and "question" in r and "answer" in r for r in rows):
        raise CorpusError(f"{path}: expected GSM8K lines with \"question\" and \"answer\"")
    return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]


def _grid(n: int, grid: tuple | None) -> tuple[int, int]:
    if grid and grid[0] * grid[1] == n:
        return int(grid[0]), int(grid[1])
    rows = max(1, int(math.sqrt(n)))
    return rows, math.ceil(n / rows)


def evo_token_set(n: int, visual_dim: int, t: int, text_dim: int, seed: int, grid: tuple | None = None) -> dict:
    """One {"visual_tokens": [n, Dv], "text_embeds": [t, Dt], "text_mask": [t]} float32 set (see module doc)."""
    rng = np.random.default_rng(seed)
    rows, cols = _grid(n, grid)
    yy, xx = np.divmod(np.arange(n), cols)
    background = rng.standard_normal(visual_dim) / math.sqrt(visual_dim)
    ramp = (yy / max(rows - 1, 1))[:, None]  # a smooth gradient, like sky over ground
    visual = 0.5 * ramp * background * math.sqrt(visual_dim)
    directions = []
    for _ in range(rng.integers(2, 7)):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        sigma = rng.uniform(1.5, max(2.0, min(rows, cols) / 4))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        d = rng.standard_normal(visual_dim)
        directions.append(d)
        visual = visual + rng.uniform(0.8, 2.0) * blob[:, None] * d
    visual = visual + 0.3 * rng.standard_normal((n, visual_dim))
    sinks = rng.choice(n, size=int(rng.integers(1, 5)), replace=False)
    visual[sinks] *= 10.0
    t_real = int(rng.integers(min(4, t), t + 1))
    text = rng.standard_normal((t, text_dim))
    asked = directions[int(rng.integers(len(directions)))]
    for i in rng.choice(t_real, size=min(t_real, int(rng.integers(1, 4))), replace=False):
        # the words naming the object share its direction (projected into the text width)
        text[i] = 0.5 * text[i] + np.resize(asked, text_dim)
    text[t_real:] = 0.0
    mask = np.zeros(t, dtype=np.float32)
    mask[:t_real] = 1.0
    return {"visual_tokens": visual.astype(np.float32), "text_embeds": text.astype(np.float32), "text_mask": mask}


def evo_token_sets(n: int, visual_dim: int, t: int, text_dim: int, count: int = 20, seed: int = 0, grid=None) -> list[dict]:
    return [evo_token_set(n, visual_dim, t, text_dim, seed * 100_003 + i, grid) for i in range(count)]
