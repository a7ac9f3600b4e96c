"""`python -m runtime_py.parity BUILD_DIR [--record] [--allow-disabled]`: re-check a build.

1. sha256 of every artifact against manifest.json (a changed file stops everything: nothing else is trusted);
2. for every artifact that can run here, against the eager fp32 model on the parity corpus (corpus.py):
   numeric parity (max-abs, mean-abs, PSNR of keep_prob / keep_logits) and decision parity, the thing a user
   feels, by the check each compressor's spec names (compressors/spec.py): MOOSComp kept-word agreement and
   exact compressed-text match through the full compress_prompt at rates 0.25, 0.33, 0.5 (parity_moos.py);
   EvoComp top-k IoU at 2x, 3x, 4x (parity_evo.py);
3. latency of one run at the artifact's shape on this CPU (median), timed in alternating blocks with the eager model.
Thresholds are per precision, the quant recipe's (quant/recipe.py): the numeric ones here (NUMERIC_THRESHOLDS),
the decision ones in each spec (reasons in docs/PARITY.md). parity.json and parity.md land beside
the manifest; --record also writes parity, latency_ms, enabled and disabled_reason into manifest.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys

import numpy as np
from tqdm import tqdm

from compkit.errors import CompkitError
from compressors.spec import get_spec

from . import corpus
from .manifest import ManifestError, read_manifest, stray_files, verify_sha256, write_json_atomic, write_text_atomic
from .pipeline import Build
from .report import markdown_table
from .runners import RunnerUnavailable

# max_abs on the scores (keep_prob / keep_logits) and the outlier z, for fp32 only: the lower precisions are
# judged by their decisions (each spec's thresholds)
NUMERIC_THRESHOLDS = {"fp32": {"max_abs": 1e-4, "max_abs_outlier_z": 1e-4}, "fp16": {}, "int8": {}, "4bit": {}}
DECISION_LABELS = {"word_agreement": "word agreement", "exact_text": "exact-text match", "iou": "top-k IoU",
                   "iou_beyond_ties": "top-k IoU beyond fp32 ties"}


def thresholds(model: str, precision: str) -> dict:
    return {**NUMERIC_THRESHOLDS[precision], **get_spec(model).thresholds[precision]}


@dataclasses.dataclass
class ParityContext:
    """What every spec's parity check may use: the corpus, and caches shared across its groups."""

    prompts: list
    n_sets: int = 20
    seed: int = 0
    latency_runs: int = 5
    caches: dict = dataclasses.field(default_factory=dict)

    def cache(self, name: str) -> dict:
        return self.caches.setdefault(name, {})
_SEP, _LAB = "\x1e", "\x1f"  # word / label separators that never occur in text


def numeric(ref: np.ndarray, got: np.ndarray) -> dict:
    """max-abs, mean-abs and PSNR (dB, peak = the reference's range; None when identical) over flat values."""
    ref, got = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    if not np.isfinite(got).all():
        return {"max_abs": None, "mean_abs": None, "psnr_db": None, "nonfinite": int((~np.isfinite(got)).sum())}
    err = np.abs(ref - got)
    mse = float(np.mean(err**2))
    peak = float(ref.max() - ref.min()) or 1.0
    return {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
            "psnr_db": None if mse == 0 else float(10 * np.log10(peak**2 / mse))}


class CachedScorer:
    """Remembers every (input_ids, attention_mask) -> outputs it served: the three rates reuse one model pass,
    and the artifact's and the reference's outputs on the very same windows can be compared afterwards."""

    def __init__(self, scorer, cache: dict | None = None):
        self.scorer, self.seq_lens = scorer, scorer.seq_lens
        self.cache = {} if cache is None else cache

    def __call__(self, input_ids, attention_mask, chunk: int = 8):
        keys = [(input_ids[i].tobytes(), attention_mask[i].tobytes()) for i in range(input_ids.shape[0])]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        for start in range(0, len(todo), chunk):  # misses in small batches: the eager model runs them batched
            rows = todo[start : start + chunk]
            out = self.scorer(input_ids[rows], attention_mask[rows])
            for j, i in enumerate(rows):
                self.cache[keys[i]] = {k: v[j] for k, v in out.items()}
        return {k: np.stack([self.cache[key][k] for key in keys]) for k in self.cache[keys[0]]}


def topk_iou(i_ref: np.ndarray, i_got: np.ndarray) -> float:
    """Intersection over union of two kept-index sets."""
    return len(np.intersect1d(i_ref, i_got)) / len(np.union1d(i_ref, i_got))


def iou_beyond_ties(ref: np.ndarray, got: np.ndarray, i_ref: np.ndarray, i_got: np.ndarray) -> float:
    """Top-k IoU, except that a disagreement among tokens whose reference scores lie within the measured
    numeric error (2 x max-abs) of the k-th score counts as agreement: such a swap is a tie that fp32
    reordering decides, not a different decision."""
    swapped = np.setxor1d(i_ref, i_got)
    if len(swapped) == 0:
        return 1.0
    kth = np.sort(ref)[::-1][len(i_ref) - 1]
    if np.all(np.abs(ref[swapped] - kth) <= 2 * np.abs(ref - got).max()):
        return 1.0
    return topk_iou(i_ref, i_got)


def word_labels(result: dict) -> list[tuple[str, str]]:
    return [tuple(x.rsplit(_LAB, 1)) for x in result["fn_labeled_original_prompt"].split(_SEP)]


def precision_of(artifact: dict) -> str:
    """The parity class of an artifact's quant recipe (QuantRecipe.precision); an unknown backend or recipe is
    a damaged manifest or one from another compkit revision, never judged as some default."""
    from export.backends import get_backend

    try:
        return get_backend(artifact["backend"]).recipe(artifact["quant"]).precision
    except CompkitError as e:
        raise ManifestError(f"{artifact['file']}: {e} (manifest from another compkit revision?): rebuild it") from None


def judge(rec: dict, precision: str, model: str) -> list[str]:
    """Why a record fails its model's thresholds at its precision ([] = pass)."""
    th, why = thresholds(model, precision), []
    num = rec.get("numeric", {})
    if num.get("nonfinite"):
        why.append(f"{num['nonfinite']} non-finite outputs")
    elif "max_abs" in th and num.get("max_abs") is not None and num["max_abs"] > th["max_abs"]:
        why.append(f"max-abs {num['max_abs']:.2e} > {th['max_abs']:.0e}")
    z = rec.get("numeric_outlier_z") or {}
    if "max_abs_outlier_z" in th and z.get("max_abs") is not None and z["max_abs"] > th["max_abs_outlier_z"]:
        why.append(f"outlier_z max-abs {z['max_abs']:.2e} > {th['max_abs_outlier_z']:.0e}")
    d = rec.get("decisions", {})
    for key in (k for k in th if k in d):
        label = DECISION_LABELS.get(key, key.replace("_", " "))
        worst_at, worst = min(d[key].items(), key=lambda kv: kv[1])
        if worst < th[key]:
            why.append(f"{label} {worst:.4f} < {th[key]} at {worst_at}")
    return why


def check_build(build: Build, prompts: list[str], n_sets: int = 20, seed: int = 0, latency_runs: int = 5) -> list[dict]:
    """One result per artifact: {file, model, backend, quant, precision, status, reasons, ...figures}."""
    results, ctx = {}, ParityContext(prompts, n_sets, seed, latency_runs)
    groups: dict[tuple, list[dict]] = {}
    for a in build.artifacts():
        base = {"file": a["file"], "model": a["model"], "backend": a["backend"], "quant": a["quant"],
                "bucket": a.get("bucket"), "precision": precision_of(a)}
        results[a["file"]] = base
        reason = a.get("disabled_reason") or ""
        if not a.get("enabled", True) and not reason.startswith("parity"):
            base.update(status="disabled", reasons=[reason or "disabled at export"])
        elif get_spec(a["model"]).bucketed:  # its buckets are checked together, as the pipeline uses them
            groups.setdefault((a["model"], a["backend"], a["quant"]), []).append(a)
        else:
            groups[(a["file"],)] = [a]
    for key, arts in tqdm(groups.items(), desc="parity", unit="artifact group"):
        files = [a["file"] for a in arts]
        try:
            recs = get_spec(arts[0]["model"]).parity_check()(build, arts, ctx)
        except RunnerUnavailable as e:
            for f in files:
                results[f].update(status="skipped", reasons=[str(e)])
            continue
        except Exception as e:  # a runtime that fails on an artifact is a failed artifact, named, not a crash
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            for f in files:
                results[f].update(status="failed", reasons=[f"could not run: {msg}"])
            continue
        for f, rec in recs.items():
            why = judge(rec, results[f]["precision"], results[f]["model"])
            results[f].update(rec, status="failed" if why else "pass", reasons=why)
    return list(results.values())


def record(build: Build, results: list[dict]) -> dict:
    """The manifest with parity, latency_ms, enabled and disabled_reason filled in from the results."""
    by_file = {r["file"]: r for r in results}
    for a in build.manifest["artifacts"]:
        r = by_file[a["file"]]
        if r["status"] == "disabled":
            continue
        a["parity"] = {k: r[k] for k in ("status", "precision", "reasons", "numeric", "numeric_outlier_z", "decisions",
                                        "windows", "token_sets", "eager_latency_ms") if k in r}
        a["latency_ms"] = r.get("latency_ms")
        if r["status"] in ("pass", "failed"):  # skipped: not measured here, so neither enabled nor disabled by us
            a["enabled"] = r["status"] == "pass"
            a["disabled_reason"] = None if a["enabled"] else "parity: " + "; ".join(r["reasons"])
    return build.manifest


def version_notes(manifest: dict) -> list[str]:
    """What differs between the build's toolchain and revision and this one's: parity here still holds, but
    it is not the toolchain that made the artifacts."""
    from export.build import git_revision, tool_versions

    built, here = manifest.get("tool_versions") or {}, tool_versions()
    notes = [f"{name} {built[name]} built it, {here.get(name)} checks it" for name in sorted(built)
             if name in here and built[name] != here[name]]
    rev, now = manifest.get("compkit_revision"), git_revision()
    if rev and now != "unknown" and rev != now:
        notes.append(f"compkit revision {rev[:12]} built it, {now[:12]} checks it")
    return notes


def load_references(build: Build) -> None:
    """The eager references every artifact is judged against, loaded up front: a manifest whose models cannot
    be rebuilt is a broken build (exit 2), not a failure of each of its artifacts."""
    for name in build.manifest["models"]:
        try:
            build.reference(name)
        except ManifestError:
            raise
        except Exception as e:
            raise ManifestError(f"models.{name} in manifest.json cannot be loaded ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}): the manifest is damaged or from "
                                "another compkit revision; rebuild") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime_py.parity", description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("--record", action="store_true", help="write parity, latency_ms, enabled into manifest.json")
    ap.add_argument("--allow-disabled", action="store_true", help="exit 0 even when artifacts fail parity")
    ap.add_argument("--prompts", default=corpus.DEFAULT_PROMPTS, help="parity prompts (.jsonl, one {\"text\": ...} a line)")
    ap.add_argument("--gsm8k", metavar="PATH", help="also GSM8K test.jsonl (question + answer), first --gsm8k-limit items")
    ap.add_argument("--gsm8k-limit", type=int, default=20)
    ap.add_argument("--evo-sets", type=int, default=20, help="EvoComp token sets (seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for eager PyTorch and ONNX Runtime (default: their own; XNNPACK picks its own)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        manifest = read_manifest(args.build_dir)
        problems = verify_sha256(args.build_dir, manifest)
        if problems:
            for p in problems:
                print(f"error: {p}", file=sys.stderr)
            return 2
        build = Build(os.fspath(args.build_dir), manifest, args.threads)
        text = [get_spec(name) for name in manifest["models"] if get_spec(name).corpus_stats]  # the text compressors
        prompts = corpus.load_prompts(args.prompts) if text else []
        if args.gsm8k and prompts:
            prompts += corpus.load_gsm8k(args.gsm8k, args.gsm8k_limit)
        load_references(build)
        stats = {k: v for spec in text for k, v in spec.corpus_stats(build.reference(spec.name), prompts).items()}
    except (ManifestError, corpus.CorpusError, ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for note in version_notes(manifest):
        print(f"note: {note}", file=sys.stderr)
    stray = stray_files(args.build_dir, manifest)
    if stray:
        print(f"warning: {len(stray)} file(s) in the build folder that manifest.json does not list (left by another "
              f"or an interrupted export?): {', '.join(stray)}", file=sys.stderr)
    if stats.get("warning"):
        print(f"warning: {stats.pop('warning')}", file=sys.stderr)
    results = check_build(build, prompts, args.evo_sets, args.seed, args.latency_runs)
    report = {"build": os.path.abspath(args.build_dir), "checked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "corpus": {"prompts": len(prompts), **stats, "prompt_file": args.prompts,
                         "gsm8k": args.gsm8k, "evo_token_sets": args.evo_sets, "seed": args.seed},
              "thresholds": {name: {p: thresholds(name, p) for p in NUMERIC_THRESHOLDS} for name in manifest["models"]},
              "artifacts": results}
    table = markdown_table(results)
    write_json_atomic(os.path.join(args.build_dir, "parity.json"), report)
    write_text_atomic(os.path.join(args.build_dir, "parity.md"), f"# Parity of {os.path.basename(os.path.abspath(args.build_dir))}\n\n{table}\n")
    if args.record:
        write_json_atomic(os.path.join(args.build_dir, "manifest.json"), record(build, results))
    print(table)
    failed = [r["file"] for r in results if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} artifact(s) failed parity: {', '.join(failed)}"
              + (" (allowed: --allow-disabled)" if args.allow_disabled else ""), file=sys.stderr)
        return 0 if args.allow_disabled else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
