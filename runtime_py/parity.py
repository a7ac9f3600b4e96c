"""`python -m runtime_py.parity BUILD_DIR [--record] [--allow-disabled]`: re-check a build.

1. sha256 of every artifact against manifest.json (a changed file stops everything: nothing else is trusted);
2. for every artifact that can run here, against the eager fp32 model on the parity corpus (corpus.py):
   numeric parity (max-abs, mean-abs, PSNR of keep_prob / keep_logits) and decision parity, the thing a user
   feels: MOOSComp kept-word agreement and exact compressed-text match through the full compress_prompt at
   rates 0.25, 0.33, 0.5; EvoComp top-k IoU at 2x, 3x, 4x;
3. latency of one run at the artifact's shape on this CPU (median), timed in alternating blocks with the eager model.
Thresholds are per precision (THRESHOLDS; reasons in docs/PARITY.md). parity.json and parity.md land beside
the manifest; --record also writes parity, latency_ms, enabled and disabled_reason into manifest.json.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys

import numpy as np
from tqdm import tqdm

from . import corpus
from .manifest import ManifestError, read_manifest, stray_files, verify_sha256, write_json_atomic, write_text_atomic
from .pipeline import BucketedEagerScorer, Build, MoosArtifactScorer, evo_compress
from .report import markdown_table
from .runners import EagerRunner, RunnerUnavailable, paired_latency_ms

MOOS_RATES = (0.25, 0.33, 0.5)
EVO_RATIOS = (2.0, 3.0, 4.0)
MOOSCOMP_OUTLIER_WEIGHT = 0.3  # docs/MOOSCOMP.md's example weight; decisions are also checked with the outlier score fused in, when it is exported
PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8dyn": "int8", "int8static": "int8", "int8w": "int8",
             "8da4w": "4bit", "pal4": "4bit"}
# max_abs on keep_prob / keep_logits; word_agreement and iou are minima over rates / ratios (fractions);
# exact_text only where every decision must be identical.
THRESHOLDS = {
    "fp32": {"max_abs": 1e-4, "max_abs_outlier_z": 1e-4, "word_agreement": 1.0, "exact_text": 1.0, "iou_beyond_ties": 1.0},
    "fp16": {"word_agreement": 0.98, "iou": 0.95},
    "int8": {"word_agreement": 0.98, "iou": 0.95},
    "4bit": {"word_agreement": 0.98, "iou": 0.95},
}
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
    return len(np.intersect1d(i_ref, i_got)) / len(np.union1d(i_ref, i_got))


def word_labels(result: dict) -> list[tuple[str, str]]:
    return [tuple(x.rsplit(_LAB, 1)) for x in result["fn_labeled_original_prompt"].split(_SEP)]


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
            ious[r].append(len(np.intersect1d(i_ref, i_got)) / len(np.union1d(i_ref, i_got)))
            beyond[r].append(iou_beyond_ties(refs[-1][0], gots[-1][0], i_ref, i_got))
    first = {"visual_tokens": sets[0]["visual_tokens"][None], "text_embeds": sets[0]["text_embeds"][None],
             "text_mask": sets[0]["text_mask"][None].astype(mask_dtype)}
    latency, eager_latency = paired_latency_ms(runner, eager, first, latency_runs)
    return {"token_sets": n_sets, "numeric": numeric(np.concatenate(refs), np.concatenate(gots)),
            "decisions": {"iou": {f"{r:g}x": float(np.mean(v)) for r, v in ious.items()},
                          "iou_min": {f"{r:g}x": float(np.min(v)) for r, v in ious.items()},
                          "iou_beyond_ties": {f"{r:g}x": float(np.mean(v)) for r, v in beyond.items()}},
            "latency_ms": latency, "eager_latency_ms": eager_latency}


def judge(rec: dict, precision: str) -> list[str]:
    """Why a record fails its precision's thresholds ([] = pass)."""
    th, why = THRESHOLDS[precision], []
    num = rec.get("numeric", {})
    if num.get("nonfinite"):
        why.append(f"{num['nonfinite']} non-finite outputs")
    elif "max_abs" in th and num.get("max_abs") is not None and num["max_abs"] > th["max_abs"]:
        why.append(f"max-abs {num['max_abs']:.2e} > {th['max_abs']:.0e}")
    z = rec.get("numeric_outlier_z") or {}
    if "max_abs_outlier_z" in th and z.get("max_abs") is not None and z["max_abs"] > th["max_abs_outlier_z"]:
        why.append(f"outlier_z max-abs {z['max_abs']:.2e} > {th['max_abs_outlier_z']:.0e}")
    d = rec.get("decisions", {})
    for key, label in (("word_agreement", "word agreement"), ("exact_text", "exact-text match"), ("iou", "top-k IoU"),
                       ("iou_beyond_ties", "top-k IoU beyond fp32 ties")):
        if key in th and key in d:
            worst_at, worst = min(d[key].items(), key=lambda kv: kv[1])
            if worst < th[key]:
                why.append(f"{label} {worst:.4f} < {th[key]} at {worst_at}")
    return why


def check_build(build: Build, prompts: list[str], n_sets: int = 20, seed: int = 0, latency_runs: int = 5) -> list[dict]:
    """One result per artifact: {file, model, backend, quant, precision, status, reasons, ...figures}."""
    results, ref_cache = {}, {}
    groups: dict[tuple, list[dict]] = {}
    for a in build.artifacts():
        base = {"file": a["file"], "model": a["model"], "backend": a["backend"], "quant": a["quant"],
                "bucket": a.get("bucket"), "precision": PRECISION.get(a["quant"], "int8")}
        results[a["file"]] = base
        reason = a.get("disabled_reason") or ""
        if not a.get("enabled", True) and not reason.startswith("parity"):
            base.update(status="disabled", reasons=[reason or "disabled at export"])
        elif a["model"] == "moos":
            groups.setdefault((a["backend"], a["quant"]), []).append(a)
        else:
            groups[(a["file"],)] = [a]
    for key, arts in tqdm(groups.items(), desc="parity", unit="artifact group"):
        files = [a["file"] for a in arts]
        try:
            if arts[0]["model"] == "moos":
                recs = moos_group(build, arts, prompts, ref_cache, latency_runs)
            else:
                recs = {arts[0]["file"]: evo_artifact(build, arts[0], n_sets, seed, latency_runs)}
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
            why = judge(rec, results[f]["precision"])
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
    for name in ("moos", "evo"):
        if name not in build.manifest["models"]:
            continue
        try:
            getattr(build, name)
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
        prompts = corpus.load_prompts(args.prompts) if "moos" in manifest["models"] else []
        if args.gsm8k and prompts:
            prompts += corpus.load_gsm8k(args.gsm8k, args.gsm8k_limit)
        load_references(build)
        long = sum(len(build.moos.tokenizer(p, add_special_tokens=False)["input_ids"]) > 510 for p in prompts)
    except (ManifestError, corpus.CorpusError, ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for note in version_notes(manifest):
        print(f"note: {note}", file=sys.stderr)
    stray = stray_files(args.build_dir, manifest)
    if stray:
        print(f"warning: {len(stray)} file(s) in the build folder that manifest.json does not list (left by another "
              f"or an interrupted export?): {', '.join(stray)}", file=sys.stderr)
    if prompts and (len(prompts) < 20 or not long):
        print(f"warning: {len(prompts)} prompts, {long} longer than one 512 window: the issue asks for >= 20 with some "
              "longer than 512 pieces", file=sys.stderr)
    results = check_build(build, prompts, args.evo_sets, args.seed, args.latency_runs)
    report = {"build": os.path.abspath(args.build_dir), "checked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "corpus": {"prompts": len(prompts), "prompts_longer_than_512_pieces": int(long), "prompt_file": args.prompts,
                         "gsm8k": args.gsm8k, "evo_token_sets": args.evo_sets, "seed": args.seed},
              "thresholds": THRESHOLDS, "artifacts": results}
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
