"""Calibration inputs for the static-activation recipes (XNNPACK int8static, ONNX int8static).

MOOSComp: real text, the shipped corpus compressors/data/prompts.jsonl (meetings, code, maths, dialogue...),
tokenized exactly as the compressor does ([CLS] + pieces + [SEP], cut to the bucket, padded with [PAD],
mask 0 on padding). Windows are taken at varied fills of the bucket (full, three quarters, half, a
quarter) so the observers see the padded tail that short chunks produce.

EvoComp: there is no public visual-token corpus, so calibration sets are synthetic and seeded, built to
have what real projector outputs have and plain Gaussian noise lacks (documented in docs/EXPORT.md):
- per-channel scales drawn log-normally (a few channels carry most of the energy, as in CLIP/SigLIP
  features after an MLP projector);
- spatially smooth "objects" (Gaussian blobs on the token grid sharing a direction);
- a few high-norm outlier tokens (~10x the median norm: ViT "register"/attention-sink tokens), which set
  the activation ranges static int8 has to cover;
- text embeddings at a smaller scale, with a real-length mask (4..T tokens) and zero padding.
Seeds here (1000+) differ from the parity corpus's, so calibration never sees a parity input.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .corpus import PROMPTS, corpus_texts

FILLS = (1.0, 0.75, 0.5, 0.25)
EVO_SEED = 1000


def moos_calibration(compressor, seq_len: int, count: int = 8, path: str = PROMPTS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` (input_ids int32 [1, L], attention_mask int32 [1, L]) windows of real text for bucket L."""
    tok = compressor.tokenizer
    cls_id, sep_id, pad_id = (compressor.special_ids[k] for k in ("cls", "sep", "pad"))
    texts = corpus_texts(path)
    out = []
    for i in range(count):
        pieces = tok(texts[i % len(texts)], add_special_tokens=False)["input_ids"]
        real = max(3, int(seq_len * FILLS[i % len(FILLS)]))
        offset = (i // len(texts)) * (seq_len - 2)  # later passes over the corpus read further into each text
        body = (pieces[offset:] or pieces)[: real - 2]
        window = [cls_id] + body + [sep_id]
        ids = torch.full((1, seq_len), pad_id, dtype=torch.int32)
        mask = torch.zeros((1, seq_len), dtype=torch.int32)
        ids[0, : len(window)] = torch.tensor(window, dtype=torch.int32)
        mask[0, : len(window)] = 1
        out.append((ids, mask))
    return out


def evo_token_set(n: int, visual_dim: int, t: int, text_dim: int, seed: int, grid: tuple | None = None):
    """One (visual_tokens [1, n, Dv] f32, text_embeds [1, t, Dt] f32, text_mask [1, t] int32) set."""
    rng = np.random.default_rng(seed)
    cols = grid[1] if grid and grid[0] * grid[1] == n else max(1, math.ceil(math.sqrt(n)))
    yy, xx = np.divmod(np.arange(n), cols)
    scales = np.exp(rng.normal(0.0, 0.5, visual_dim))  # log-normal per-channel scales
    visual = rng.standard_normal((n, visual_dim)) * 0.5
    for _ in range(int(rng.integers(2, 6))):  # smooth objects on the grid
        cy, cx, sigma = rng.uniform(0, n / cols), rng.uniform(0, cols), rng.uniform(1.5, 4.0)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        visual += rng.uniform(0.8, 2.0) * blob[:, None] * rng.standard_normal(visual_dim)
    visual *= scales
    outliers = rng.choice(n, size=min(n, int(rng.integers(1, 5))), replace=False)
    visual[outliers] *= 10.0  # high-norm register / sink tokens
    t_real = int(rng.integers(min(4, t), t + 1))
    text = rng.standard_normal((t, text_dim)) * 0.5
    text[t_real:] = 0.0
    mask = np.zeros((1, t), dtype=np.int32)
    mask[0, :t_real] = 1
    return (torch.from_numpy(visual.astype(np.float32))[None], torch.from_numpy(text.astype(np.float32))[None],
            torch.from_numpy(mask))


def evo_calibration(config, n_visual: int, count: int = 16, seed: int = EVO_SEED):
    """`count` seeded EvoComp input tuples at n_visual visual tokens and the config's max text length."""
    grid = tuple(config.grid) if n_visual == config.max_visual_tokens else None
    return [evo_token_set(n_visual, config.visual_dim, config.max_text_tokens, config.text_dim, seed + i, grid)
            for i in range(count)]
