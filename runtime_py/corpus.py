"""The parity corpus: real-text prompts for MOOSComp, representative visual/text token sets for EvoComp.

Prompts come from the corpus shipped in the repo (compressors/data/prompts.jsonl, one {"text": ...} per line)
and optionally GSM8K (question + worked answer, the kind of prompt MOOSComp was evaluated on).

EvoComp token sets come from compressors/calibration.py's generator (seeded; smooth objects on the token grid,
log-normal channel scales, high-norm sink tokens, a real-length masked question: what a projector's output
has and white noise lacks), at seeds disjoint from the ones calibration uses, so no parity input was ever
seen by a static-int8 observer.
"""
from __future__ import annotations

import json
import os

import numpy as np

from compkit.errors import CompkitError
from compressors.corpus import PROMPTS as DEFAULT_PROMPTS


class CorpusError(CompkitError, ValueError):
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


def evo_token_sets(n: int, visual_dim: int, t: int, text_dim: int, count: int = 20, seed: int = 0, grid=None) -> list[dict]:
    """`count` unbatched {"visual_tokens" [n, Dv], "text_embeds" [t, Dt], "text_mask" [t]} float32 sets from
    compressors.calibration's generator, at seeds seed*100_003 + i: never the 1000+ seeds calibration reads."""
    from compressors.calibration import EVO_SEED, evo_token_set

    seeds = [seed * 100_003 + i for i in range(count)]
    if any(EVO_SEED <= s < EVO_SEED + 1000 for s in seeds):
        raise ValueError(f"--seed {seed} would reuse calibration's token sets; pick another seed")
    sets = []
    for s in seeds:
        v, e, m = evo_token_set(n, visual_dim, t, text_dim, s, grid)
        sets.append({"visual_tokens": v[0].numpy(), "text_embeds": e[0].numpy(), "text_mask": m[0].numpy().astype(np.float32)})
    return sets
