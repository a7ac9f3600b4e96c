"""MOOSComp's parity check (compressors/moos_spec.py names it): one backend + quant's bucket artifacts together,
through the full compress_prompt, against the eager fp32 reference: kept-word agreement and exact text at
rates 0.25 / 0.33 / 0.5 (with the outlier score fused in when it is exported), numeric parity of keep_prob
(and outlier_z) on every window either side saw, and paired latency."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from compressors.moos_spec import MOOS_RATES

from .parity import _LAB, _SEP, CachedScorer, numeric, word_labels
from .pipeline import BucketedEagerScorer, Build, MoosArtifactScorer
from .runners import EagerRunner, paired_latency_ms

MOOSCOMP_OUTLIER_WEIGHT = 0.3  # docs/MOOSCOMP.md's example weight; decisions are also checked with the outlier score fused in, when it is exported


def check(build: Build, arts: list[dict], ctx) -> dict:
    return moos_group(build, arts, ctx.prompts, ctx.cache("moos"), ctx.latency_runs)


def moos_group(build: Build, arts: list[dict], prompts: list[str], ref_cache: dict, latency_runs: int) -> dict:
    """Parity of one MOOSComp backend+quant (its buckets together, as the pipeline uses them): {file: record}.
    Both sides chunk at the group's largest bucket and pad to the same buckets, so they see identical inputs."""
    buckets = sorted(a["bucket"] for a in arts)
    runners = {a["bucket"]: build.runner(a) for a in arts}
    art = CachedScorer(MoosArtifactScorer(runners))
    ref = CachedScorer(BucketedEagerScorer(build.moos.torch_module, buckets), ref_cache)
    weights = [0.0] + ([MOOSCOMP_OUTLIER_WEIGHT] if "outlier_z" in arts[0]["output_names"]
                       and build.moos.outlier == "representation" else [])
    agree = {r: [0, 0] for r in MOOS_RATES}  # [same words, words] summed over prompts and weights
    exact = {r: [0, 0] for r in MOOS_RATES}
    for p in tqdm(prompts, desc=f"  {arts[0]['backend']} {arts[0]['quant']} prompts", leave=False):
        for w in weights:
            comps = []
            for scorer in (ref, art):
                c = build.moos.with_scorer(scorer)
                c.outlier_weight, c.max_seq_len = w, min(c.max_seq_len, buckets[-1])
                comps.append(c)
            for r in MOOS_RATES:
                a, b = (c.compress_prompt(p, rate=r, return_word_label=True, word_sep=_SEP, label_sep=_LAB) for c in comps)
                la, lb = word_labels(a), word_labels(b)
                agree[r][0] += sum(x == y for x, y in zip(la, lb))
                agree[r][1] += max(len(la), len(lb))
                exact[r][0] += a["compressed_prompt"] == b["compressed_prompt"]
                exact[r][1] += 1
    # Numeric parity also sees one full-length window per prompt per bucket, so every bucket gets real text.
    tok, ids_of = build.moos.tokenizer, build.moos.special_ids
    all_pieces = tok(prompts, add_special_tokens=False)["input_ids"]
    for L in buckets:
        ids = np.full((len(prompts), L), ids_of["pad"], np.int32)
        mask = np.zeros((len(prompts), L), np.int32)
        for row, pieces in enumerate(all_pieces):
            window = [ids_of["cls"]] + pieces[: L - 2] + [ids_of["sep"]]
            ids[row, : len(window)], mask[row, : len(window)] = window, 1
        art(ids, mask), ref(ids, mask)
    decisions = {"word_agreement": {str(r): agree[r][0] / agree[r][1] for r in MOOS_RATES},
                 "exact_text": {str(r): exact[r][0] / exact[r][1] for r in MOOS_RATES},
                 "outlier_weights": weights, "prompts": len(prompts)}
    records = {}
    for a in arts:
        L = a["bucket"]
        keys = [k for k in art.cache if len(k[1]) == 4 * L]
        sel = [np.frombuffer(k[1], np.int32).astype(bool) for k in keys]  # real tokens only
        rec = {"windows": len(keys), "decisions": decisions}
        for out in ("keep_prob", "outlier_z"):
            if out in a["output_names"]:
                rec["numeric" if out == "keep_prob" else "numeric_outlier_z"] = numeric(
                    np.concatenate([ref.cache[k][out][m] for k, m in zip(keys, sel)]),
                    np.concatenate([art.cache[k][out][m] for k, m in zip(keys, sel)]))
        window = {"input_ids": np.frombuffer(keys[0][0], np.int32)[None].copy(),
                  "attention_mask": np.frombuffer(keys[0][1], np.int32)[None].copy()}
        eager = EagerRunner(build.moos.torch_module, a["input_spec"], a["output_names"])
        rec["latency_ms"], rec["eager_latency_ms"] = paired_latency_ms(runners[L], eager, window, latency_runs)
        records[a["file"]] = rec
    return records
