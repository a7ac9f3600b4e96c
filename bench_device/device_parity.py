"""Decision parity on a device's own kernels: the same .pte through compkit_runner here and on the device.

    python -m bench_device.device_parity BUILD_DIR --device adb:SERIAL [--texts 12] [--evo-sets 4] [--out STEM]

An arm64 phone runs XNNPACK's arm64 kernels, whose int8 arithmetic differs from this machine's x86 ones. For every
enabled XNNPACK .pte of the build this runs the build's shared test vectors (vectors.json, compressors/vectors.py:
its texts; EvoComp: its model inputs plus seeded token sets as runtime_py.parity uses) through the runner on this
machine and on the device, and judges device against host with runtime_py.parity's thresholds for the artifact's
precision: max-abs of keep_prob / keep_logits, MOOSComp kept-word agreement and exact compressed text at rates
0.25, 0.33, 0.5 (outlier weight 0 and 0.3 when exported), EvoComp top-k IoU at 2x, 3x, 4x. Decisions are made in
Python from each side's model outputs (compressors/ code), so only the kernels differ. Writes STEM.json and
STEM.md (default: BUILD_DIR/device_parity-<device>); exit 1 when an artifact fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from compkit.errors import CompkitError
from runtime_py import corpus
from runtime_py.manifest import ManifestError, read_manifest, verify_sha256
from compressors.evo_spec import EVO_RATIOS
from compressors.moos_spec import MOOS_RATES
from compressors.spec import get_spec
from runtime_py.parity import (CachedScorer, _LAB, _SEP, iou_beyond_ties, judge, numeric, precision_of, topk_iou,
                               word_labels)
from runtime_py.parity_moos import MOOSCOMP_OUTLIER_WEIGHT
from runtime_py.pipeline import Build, MoosArtifactScorer, evo_compress
from runtime_py.runners import BaseRunner, normalize_spec

from .devices import DeviceError, LocalDevice, device_from_spec, host_abi
from .device_runner import DeviceRunner, RunnerFailed
from .report import write_report


class DeviceArtifactRunner(BaseRunner):
    """A .pte behind runtime_py's runner interface, run by compkit_runner on a Device (one call per run)."""

    def __init__(self, runner: DeviceRunner, path: str, artifact: dict):
        self.runner, self.path, self.name = runner, path, f"{artifact['file']} on {runner.device.name}"
        self.input_spec = normalize_spec(artifact["input_spec"])
        self.output_names = list(artifact.get("output_names") or [])

    def _run(self, arrays):
        return self.runner.run(self.path, dict(enumerate(arrays)), iters=1, warmup=0, outputs=True)["output_arrays"]


def load_vectors(build_dir: str) -> dict:
    path = os.path.join(build_dir, "vectors.json")  # export.build's write_shared_vectors
    if not os.path.isfile(path):
        raise ManifestError(f"{path} is missing: the build has no shared test vectors; rebuild it with export.build")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["_path"] = path
    return data


def moos_group(build: Build, arts: list[dict], runners: dict, prompts: list[str]) -> dict:
    """Host kernels against device kernels for one MOOSComp backend+quant (its buckets together)."""
    scorers = {side: CachedScorer(MoosArtifactScorer({a["bucket"]: DeviceArtifactRunner(r, os.path.join(build.dir, a["file"]), a)
                                                       for a in arts})) for side, r in runners.items()}
    weights = [0.0] + ([MOOSCOMP_OUTLIER_WEIGHT] if "outlier_z" in arts[0]["output_names"]
                       and build.moos.outlier == "representation" else [])
    top = max(a["bucket"] for a in arts)
    same_words, words, same_text = ({r: 0 for r in MOOS_RATES} for _ in range(3))
    for p in tqdm(prompts, desc=f"  {arts[0]['quant']} texts", leave=False):
        for w in weights:
            comps = {}
            for side, scorer in scorers.items():
                comps[side] = build.moos.with_scorer(scorer)
                comps[side].outlier_weight, comps[side].max_seq_len = w, min(comps[side].max_seq_len, top)
            for r in MOOS_RATES:
                host, dev = (comps[s].compress_prompt(p, rate=r, return_word_label=True, word_sep=_SEP, label_sep=_LAB)
                             for s in ("host", "device"))
                lh, ld = word_labels(host), word_labels(dev)
                same_words[r] += sum(x == y for x, y in zip(lh, ld))
                words[r] += max(len(lh), len(ld))
                same_text[r] += host["compressed_prompt"] == dev["compressed_prompt"]
    decisions = {"word_agreement": {str(r): same_words[r] / words[r] for r in MOOS_RATES},
                 "exact_text": {str(r): same_text[r] / (len(prompts) * len(weights)) for r in MOOS_RATES},
                 "outlier_weights": weights}
    records = {}
    for a in arts:  # numerics per bucket, over the windows that bucket served (real tokens only)
        keys = [k for k in scorers["host"].cache if len(k[1]) == 4 * a["bucket"]]
        real = [np.frombuffer(k[1], np.int32).astype(bool) for k in keys]
        rec = records[a["file"]] = {"windows": len(keys), "texts": len(prompts), "decisions": decisions}
        for out, field in (("keep_prob", "numeric"), ("outlier_z", "numeric_outlier_z")):
            if keys and out in a["output_names"]:
                rec[field] = numeric(*(np.concatenate([scorers[s].cache[k][out][m] for k, m in zip(keys, real)])
                                       for s in ("host", "device")))
    return records


def evo_sets(build: Build, artifact: dict, vectors: dict, count: int) -> list[dict]:
    """The vectors' EvoComp model inputs (when their shapes match the artifact), then seeded corpus token sets."""
    spec = normalize_spec(artifact["input_spec"])
    (_, n, dv), (_, t, dt) = spec["visual_tokens"][0], spec["text_embeds"][0]
    sets, model = [], vectors.get("evo", {}).get("model")
    if model and model["visual_shape"] == [n, dv] and model["text_shape"] == [t, dt]:
        raw = np.fromfile(os.path.join(os.path.dirname(vectors["_path"]), model["bin"]), dtype="<f4")
        v, e = raw[: n * dv].reshape(n, dv), raw[n * dv: n * dv + t * dt].reshape(t, dt)
        sets.append({"visual_tokens": v, "text_embeds": e, "text_mask": raw[n * dv + t * dt:].reshape(t)})
    grid = build.evo.config.grid
    return (sets + corpus.evo_token_sets(n, dv, t, dt, count=count, seed=0, grid=grid))[:count]


def evo_artifact(build: Build, a: dict, runners: dict, sets: list[dict]) -> dict:
    side = {s: DeviceArtifactRunner(r, os.path.join(build.dir, a["file"]), a) for s, r in runners.items()}
    outs = {"host": [], "device": []}
    ious, beyond = ({r: [] for r in EVO_RATIOS} for _ in range(2))
    for s in tqdm(sets, desc=f"  {a['file']} token sets", leave=False):
        kept = {}
        for name, runner in side.items():
            memo = _Memo(runner)  # one device call per set: the three ratios select from the same logits
            for r in EVO_RATIOS:
                kept[name, r] = evo_compress(memo, s["visual_tokens"], s["text_embeds"], ratio=r,
                                             text_mask=s["text_mask"])[1]
            outs[name].append(memo.logits)
        for r in EVO_RATIOS:
            h, d = kept["host", r], kept["device", r]
            ious[r].append(topk_iou(h, d))
            beyond[r].append(iou_beyond_ties(outs["host"][-1][0], outs["device"][-1][0], h, d))
    return {"token_sets": len(sets), "numeric": numeric(np.concatenate(outs["host"]), np.concatenate(outs["device"])),
            "decisions": {"iou": {f"{r:g}x": float(np.mean(v)) for r, v in ious.items()},
                          "iou_min": {f"{r:g}x": float(np.min(v)) for r, v in ious.items()},
                          "iou_beyond_ties": {f"{r:g}x": float(np.mean(v)) for r, v in beyond.items()}}}


class _Memo:
    """A runner that runs once and then answers with the same keep_logits (inputs do not change within a set)."""

    def __init__(self, runner: DeviceArtifactRunner):
        self.runner, self.input_spec, self.name, self.logits = runner, runner.input_spec, runner.name, None

    def run(self, inputs):
        if self.logits is None:
            self.logits = self.runner.run(inputs)["keep_logits"]
        return {"keep_logits": self.logits}


def check_on_device(build: Build, device, vectors: dict, n_texts: int, n_sets: int) -> list[dict]:
    host = LocalDevice()
    try:
        return _check(build, {"host": DeviceRunner(host), "device": DeviceRunner(device)}, vectors, n_texts, n_sets)
    finally:
        host.cleanup()


def _check(build: Build, runners: dict, vectors: dict, n_texts: int, n_sets: int) -> list[dict]:
    device = runners["device"].device
    prompts = [t for t in vectors["texts"] if t.strip()][:n_texts]
    results, groups = {}, {}
    for a in build.artifacts():
        results[a["file"]] = {"file": a["file"], "model": a["model"], "backend": a["backend"], "quant": a["quant"],
                              "bucket": a.get("bucket"), "precision": precision_of(a)}
        if a["backend"] != "xnnpack":
            results[a["file"]].update(status="skipped", reasons=["not run by compkit_runner (XNNPACK .pte only)"])
        elif not a.get("enabled", True):
            results[a["file"]].update(status="skipped", reasons=[f"disabled: {a.get('disabled_reason')}"])
        else:
            key = (a["model"], a["quant"]) if get_spec(a["model"]).bucketed else (a["file"],)
            groups.setdefault(key, []).append(a)
    for arts in tqdm(groups.values(), desc=f"parity on {device.name}", unit="artifact group"):
        try:
            check = DEVICE_CHECKS.get(arts[0]["model"])
            if check is None:
                for a in arts:
                    results[a["file"]].update(status="skipped", reasons=[f"no device parity check for {a['model']}"])
                continue
            recs = check(build, arts, runners, prompts, vectors, n_sets)
        except (CompkitError, ValueError) as e:
            for a in arts:
                results[a["file"]].update(status="failed", reasons=[f"could not run: {' '.join(str(e).split())}"])
            continue
        for f, rec in recs.items():
            why = judge(rec, results[f]["precision"], results[f]["model"])
            status = "failed" if why else "pass" if rec.get("numeric") else "skipped"
            results[f].update(rec, status=status, reasons=why or ([] if rec.get("numeric") else [
                "no text needed this bucket: the decisions are its group's, its kernels ran on no window"]))
    return list(results.values())


# The device-vs-host checks, per compressor: they compare a phone's kernels with this host's on the same .pte
# (not against eager), so they are bench_device's own, not the specs' desktop parity checks.
DEVICE_CHECKS = {
    "moos": lambda build, arts, runners, prompts, vectors, n_sets: moos_group(build, arts, runners, prompts),
    "evo": lambda build, arts, runners, prompts, vectors, n_sets: {
        arts[0]["file"]: evo_artifact(build, arts[0], runners, evo_sets(build, arts[0], vectors, n_sets))},
}


def _worst(d: dict | None) -> str:
    return f"{min(d.values()):.4f}" if d else "-"


def markdown(report: dict) -> str:
    info = report["device_info"]
    lines = [f"# Device parity: {report['device']} ({info.get('model')}, {info.get('abi')}) against this host "
             f"({report['host_abi']})", "",
             f"Build `{report['build']}`; {report['texts']} texts of {os.path.basename(report['vectors'])}, "
             f"{report['evo_sets']} EvoComp token sets. Figures compare the device's kernels with this host's on the "
             "same .pte; worst rate / ratio shown.", "",
             "| artifact | precision | max-abs | kept-word agreement | exact text | top-k IoU | IoU beyond ties | status |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["artifacts"]:
        d, num = r.get("decisions", {}), r.get("numeric") or {}
        max_abs = f"{num['max_abs']:.2e}" if num.get("max_abs") is not None else "-"
        note = r["status"] + (f": {'; '.join(r['reasons'])}" if r.get("reasons") else "")
        lines.append(f"| {r['file']} | {r['precision']} | {max_abs} | {_worst(d.get('word_agreement'))} | "
                     f"{_worst(d.get('exact_text'))} | {_worst(d.get('iou'))} | {_worst(d.get('iou_beyond_ties'))} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench_device.device_parity", description=__doc__.splitlines()[0])
    ap.add_argument("build_dir")
    ap.add_argument("--device", required=True, help="adb:SERIAL (or local: this host against itself)")
    ap.add_argument("--texts", type=int, default=12, help="vector texts through MOOSComp (each: one runner call per window)")
    ap.add_argument("--evo-sets", type=int, default=4, help="EvoComp token sets (the vectors' inputs first)")
    ap.add_argument("--out", default=None, help="output stem (default BUILD_DIR/device_parity-<device>)")
    args = ap.parse_args(argv)
    if args.texts < 1 or args.evo_sets < 1:
        print("error: --texts and --evo-sets must be >= 1", file=sys.stderr)
        return 2
    device = None
    try:
        manifest = read_manifest(args.build_dir)
        problems = verify_sha256(args.build_dir, manifest)
        if problems:
            raise ManifestError(problems[0])
        vectors = load_vectors(args.build_dir)
        build = Build(os.fspath(args.build_dir), manifest)
        device = device_from_spec(args.device)
        results = check_on_device(build, device, vectors, args.texts, args.evo_sets)
        info = device.info()
    except (CompkitError, OSError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    finally:
        if device is not None and args.device != "local":
            try:
                device.cleanup()
            except DeviceError as e:
                print(f"warning: {e}", file=sys.stderr)
    report = {"kind": "device_parity", "device": args.device, "device_info": info,
              "host_abi": host_abi(), "build": os.path.abspath(args.build_dir),
              "vectors": vectors["_path"], "texts": min(args.texts, len(vectors["texts"])), "evo_sets": args.evo_sets,
              "artifacts": results}
    stem = args.out or os.path.join(args.build_dir, "device_parity-" + args.device.replace(":", "_"))
    md = markdown(report)
    paths = write_report(stem, report, md)
    print(md)
    print("wrote " + " and ".join(paths))
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
