"""EvoComp's parity check (compressors/evo_spec.py names it): one artifact against the eager fp32 reference on
seeded token sets (runtime_py/corpus.py): numeric parity of keep_logits, top-k IoU at 2x / 3x / 4x (also
beyond fp32 ties), and paired latency."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from compressors.evo_spec import EVO_RATIOS

from . import corpus
from .parity import iou_beyond_ties, numeric, topk_iou
from .pipeline import Build, evo_compress
from .runners import EagerRunner, paired_latency_ms


def check(build: Build, arts: list[dict], ctx) -> dict:
    return {arts[0]["file"]: evo_artifact(build, arts[0], ctx.n_sets, ctx.seed, ctx.latency_runs)}


def evo_artifact(build: Build, a: dict, n_sets: int, seed: int, latency_runs: int) -> dict:
    runner = build.runner(a)
    eager = EagerRunner(build.evo, a["input_spec"], a["output_names"] or ["keep_logits"], name="eager")
    (_, n, dv), (_, t, dt) = runner.input_spec["visual_tokens"][0], runner.input_spec["text_embeds"][0]
    mask_dtype = runner.input_spec["text_mask"][1]
    sets = corpus.evo_token_sets(n, dv, t, dt, count=n_sets, seed=seed, grid=build.evo.config.grid)
    refs, gots, ious, beyond = [], [], {r: [] for r in EVO_RATIOS}, {r: [] for r in EVO_RATIOS}
    for s in tqdm(sets, desc=f"  {a['file']} token sets", leave=False):
        inputs = {"visual_tokens": s["visual_tokens"][None], "text_embeds": s["text_embeds"][None],
                  "text_mask": s["text_mask"][None].astype(mask_dtype)}
        refs.append(eager.run(inputs)["keep_logits"])
        gots.append(runner.run(inputs)["keep_logits"])
        for r in EVO_RATIOS:
            _, i_ref = evo_compress(eager, s["visual_tokens"], s["text_embeds"], ratio=r, text_mask=s["text_mask"])
            _, i_got = evo_compress(runner, s["visual_tokens"], s["text_embeds"], ratio=r, text_mask=s["text_mask"])
            ious[r].append(topk_iou(i_ref, i_got))
            beyond[r].append(iou_beyond_ties(refs[-1][0], gots[-1][0], i_ref, i_got))
    first = {"visual_tokens": sets[0]["visual_tokens"][None], "text_embeds": sets[0]["text_embeds"][None],
             "text_mask": sets[0]["text_mask"][None].astype(mask_dtype)}
    latency, eager_latency = paired_latency_ms(runner, eager, first, latency_runs)
    return {"token_sets": n_sets, "numeric": numeric(np.concatenate(refs), np.concatenate(gots)),
            "decisions": {"iou": {f"{r:g}x": float(np.mean(v)) for r, v in ious.items()},
                          "iou_min": {f"{r:g}x": float(np.min(v)) for r, v in ious.items()},
                          "iou_beyond_ties": {f"{r:g}x": float(np.mean(v)) for r, v in beyond.items()}},
            "latency_ms": latency, "eager_latency_ms": eager_latency}
