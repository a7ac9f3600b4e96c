"""ExecuTorch's recipe API (executorch.export + XNNPackRecipeType) vs compkit's own XNNPACK lowering
(ModelJob.export), on the same eager module: delegation, .pte size, latency at 1 thread, parity vs eager.

python -m runtime_py.recipe_eval --out DIR  (writes DIR/recipe_eval.json and DIR/recipe_eval.md)"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from compkit.files import write_json, write_text
from compkit.stats import median
from export.backends import get_backend
from export.build import load_job
from export.delegation import delegation_summary

from .parity import topk_iou
from .runners import ExecuTorchRunner

# compkit recipe -> the XNNPACK recipe type that does the same quantization
PAIRS = {"fp32": "FP32", "int8dyn": "PT2E_INT8_DYNAMIC_PER_CHANNEL", "int8static": "PT2E_INT8_STATIC_PER_CHANNEL"}
FIELDS = ("model", "quant", "path", "partitions", "non_delegated_compute_nodes", "non_delegated_ops", "bytes",
          "median_ms", "max_abs_diff", "topk_iou", "error")


def recipe_export(module, example, calibration, quant, out_path) -> dict:
    from executorch.backends.xnnpack.recipes import XNNPackRecipeType
    from executorch.export import ExportRecipe, export

    recipe = ExportRecipe.get_recipe(getattr(XNNPackRecipeType, PAIRS[quant]))
    # the recipe API calibrates on its example inputs: give it the same calibration batches compkit uses
    inputs = [tuple(example)] + ([tuple(c) for c in calibration] if calibration else [])
    session = export(module.eval(), inputs, recipe)
    delegation = delegation_summary(session.get_edge_program_manager())
    session.save_to_pte(out_path)
    return delegation


def measure(path, example, ref, runs) -> dict:
    runner = ExecuTorchRunner(path)
    inputs = dict(zip(runner.input_spec, (t.numpy() for t in example)))
    times = runner.timings_ms(inputs, runs=runs, warmup=1)
    got = next(iter(runner.run(inputs).values())).reshape(-1).astype(np.float64)
    k = max(1, got.size // 2)  # keep half, as a compression rate of 2x would
    iou = topk_iou(np.argsort(-ref)[:k], np.argsort(-got)[:k])
    return {"bytes": os.path.getsize(path), "median_ms": round(median(times), 3),
            "max_abs_diff": float(np.abs(ref - got).max()), "topk_iou": round(iou, 4)}


def evaluate(jobs: dict, out_dir: str, quants=tuple(PAIRS), runs: int = 10) -> list[dict]:
    """jobs: {label: (ModelJob, bucket)}. One record per (model, quant, path); a failing path records its error."""
    torch.set_num_threads(1)
    backend = get_backend("xnnpack")
    records = []
    for label, (job, bucket) in jobs.items():
        example = tuple(job.example(bucket))
        with torch.no_grad():
            ref = job.module.eval()(*example)
        ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).reshape(-1).double().numpy()
        for quant in quants:
            recipe = backend.recipe(quant)
            calibration = job.calibration(bucket) if recipe.calibrated else None
            for path in ("compkit", "recipe_api"):
                rec = dict.fromkeys(FIELDS)
                rec.update(model=label, quant=quant, path=path)
                out_path = os.path.join(out_dir, f"{label}_{quant}_{path}.pte")
                try:
                    if path == "compkit":
                        d = job.export(backend, recipe, bucket, out_path)["delegation"]
                    else:
                        d = recipe_export(job.module, example, calibration, quant, out_path)
                    rec.update({k: d[k] for k in ("partitions", "non_delegated_compute_nodes", "non_delegated_ops")})
                    rec.update(measure(out_path, example, ref, runs))
                except Exception as e:  # a recipe the API cannot do is a finding, not a crash
                    rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                records.append(rec)
    return records


def markdown(records) -> str:
    rows = ["| model | quant | path | partitions | outside XNNPACK | .pte | median ms | max abs diff | top-k IoU |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r["error"]:
            rows.append(f"| {r['model']} | {r['quant']} | {r['path']} | failed: {r['error']} ||||||")
            continue
        outside = ", ".join(f"{k} x{v}" for k, v in r["non_delegated_ops"].items()) or "none"
        rows.append(f"| {r['model']} | {r['quant']} | {r['path']} | {r['partitions']} | {outside} | "
                    f"{r['bytes'] / 1e6:.2f} MB | {r['median_ms']} | {r['max_abs_diff']:.2e} | {r['topk_iou']} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--bucket", type=int, default=128)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    jobs = {"moos": (load_job("moos", None, {}), args.bucket), "evo": (load_job("evo", None, {}), None)}
    records = evaluate(jobs, args.out, runs=args.runs)
    write_json(os.path.join(args.out, "recipe_eval.json"), records)
    write_text(os.path.join(args.out, "recipe_eval.md"), markdown(records))
    print(markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
