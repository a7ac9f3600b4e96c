"""Benchmark every enabled artifact of a build folder on a device.

    python -m bench_device.run --device local|adb:SERIAL --build BUILD_DIR [--iters 20] [--warmup 3] [--out STEM]

ExecuTorch .pte (XNNPACK) runs through the native runner on the device; ONNX runs through onnxruntime on
this machine only (compkit ships no onnxruntime binary for phones: on adb it is reported "not on device");
CoreML (.mlpackage, CoreML-delegated .pte) is skipped with the reason. Writes STEM.json and STEM.md.

Every artifact's sha256 is checked against the manifest first (exit 2 on a mismatch: a file copied over another
would be timed under the wrong name). A device that is lost mid-run stops the run at once: the rows measured so
far are written as a partial report, and the device's error is the one printed (exit 1).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from compkit.errors import CompkitError
from compkit.stats import median
from export.backends import UnknownBackend, get_backend
from .devices import DeviceError, device_from_spec
from .device_runner import DeviceRunner, RunnerFailed, latency_ms
from .report import write_report


def machine_load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def skip_reason(artifact: dict, remote: bool) -> str | None:
    """Why this artifact is not timed here (None: it is), from its backend's on_device (export/backend.py)."""
    try:
        backend = get_backend(artifact["backend"])
    except UnknownBackend as e:
        return str(e)
    if backend.on_device == "native-runner" or (backend.on_device == "host" and not remote):
        return None
    return backend.not_on_device


def bench_pte(runner: DeviceRunner, path: str, artifact: dict, iters: int, warmup: int) -> dict:
    names = list(artifact["input_spec"])
    ones = [i for i, n in enumerate(names) if "mask" in n]  # masks all ones: every token real
    r = runner.run(path, ones=ones, iters=iters, warmup=warmup)
    return {"runtime": "compkit_runner (ExecuTorch)", "median_ms": latency_ms(r),
            "avg_ms": r["avg_inference_latency(ms)"], "trimmean_ms": r["trimmean_inference_latency(ms)"],
            "load_ms": r["model_load_time(ms)"], "peak_rss_kb": r["peak_rss_kb"], "threads": r.get("threads"),
            "iterations_ms": r["iterations_ms"]}


def bench_host(build_dir: str, artifact: dict, iters: int, warmup: int) -> dict:
    """A backend compkit does not run on phones, timed on this machine by its runtime_py runner."""
    from runtime_py.runners import load_runner

    t0 = time.perf_counter()
    runner = load_runner(build_dir, artifact)
    load_ms = (time.perf_counter() - t0) * 1e3
    times = sorted(runner.timings_ms(runs=iters, warmup=warmup))
    trim = times[len(times) // 10: len(times) - len(times) // 10] or times
    return {"runtime": f"{get_backend(artifact['backend']).runtime} (host CPU)", "median_ms": median(times), "avg_ms": sum(times) / len(times),
            "trimmean_ms": sum(trim) / len(trim), "load_ms": load_ms, "peak_rss_kb": None, "threads": None,
            "iterations_ms": times}


class ArtifactChanged(CompkitError, ValueError):
    """An artifact whose bytes are not the ones the manifest describes."""


def run(device_spec: str, build_dir: str, iters: int = 20, warmup: int = 3, runner_binary=None) -> dict:
    from runtime_py.manifest import read_manifest, verify_sha256

    manifest = read_manifest(build_dir)
    problems = verify_sha256(build_dir, manifest)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ArtifactChanged(problems[0] + more)
    device = device_from_spec(device_spec)
    remote = device_spec != "local"
    rows, runner, lost, runner_error = [], None, None, None
    try:
        todo = [a for a in manifest["artifacts"] if a.get("enabled", True)]
        for a in tqdm(todo, desc=f"artifacts on {device.name}", unit="artifact"):
            row = {k: a.get(k) for k in ("file", "model", "backend", "quant", "bucket")}
            reason = skip_reason(a, remote)
            path = os.path.join(build_dir, a["file"])
            if reason is None and not os.path.exists(path):
                reason = "file missing from the build folder"
            if reason:
                rows.append({**row, "status": "skipped", "reason": reason})
                continue
            try:
                if get_backend(a["backend"]).on_device == "host":
                    row.update(bench_host(build_dir, a, iters, warmup))
                else:
                    if runner is None and runner_error is None:
                        try:
                            runner = DeviceRunner(device, runner_binary)
                        except DeviceError:
                            raise
                        except (RunnerFailed, RuntimeError, OSError) as e:  # built once, failed once: not per .pte
                            runner_error = "no native runner: " + " ".join(str(e).split())
                    if runner_error:
                        rows.append({**row, "status": "error", "reason": runner_error})
                        continue
                    row.update(bench_pte(runner, path, a, iters, warmup))
                rows.append({**row, "status": "ok", "reason": None})
            except DeviceError as e:  # the device, not this artifact: every further call would fail the same way
                lost = " ".join(str(e).split())
                rows.append({**row, "status": "error", "reason": lost})
                break
            except (CompkitError, ValueError, RuntimeError) as e:
                rows.append({**row, "status": "error", "reason": " ".join(str(e).split())})
        info = None
        try:
            info = device.info() if lost is None else None
        except DeviceError as e:
            lost = " ".join(str(e).split())
        info = info or {"kind": "lost", "error": lost}
    finally:
        if remote:
            try:  # best effort: a lost device cannot be cleaned, and that must not hide why it was lost
                device.cleanup()
            except DeviceError:
                pass
    skipped = [a for a in manifest["artifacts"] if not a.get("enabled", True)]
    return {"kind": "artifact_benchmark", "device": device_spec, "device_info": info, "device_lost": lost,
            "build": os.path.abspath(build_dir), "manifest_created": manifest.get("created"),
            "iters": iters, "warmup": warmup, "machine_load": machine_load(),
            "timed_where": {"xnnpack .pte": "on the device, by the native runner",
                            "onnx": "on this machine, onnxruntime CPU (never on an adb device)"},
            "artifacts": rows,
            "disabled_in_manifest": [{"file": a["file"], "reason": a.get("disabled_reason")} for a in skipped]}


def markdown(result: dict) -> str:
    info = result["device_info"]
    lines = [f"# Artifact benchmark: {result['device']} ({info.get('model')}, {info.get('soc')}, {info.get('cores')} cores)",
             "", f"Build `{result['build']}`; {result['iters']} timed runs after {result['warmup']} warm-up; "
             f"load average at the end: {result['machine_load']}.", "",
             "| artifact | model | backend | quant | runtime | median ms | mean ms | load ms | peak RSS MB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["artifacts"]:
        if r["status"] == "ok":
            rss = f"{r['peak_rss_kb'] / 1024:.0f}" if r.get("peak_rss_kb") else "-"
            lines.append(f"| {r['file']} | {r['model']} | {r['backend']} | {r['quant']} | {r['runtime']} | "
                         f"{r['median_ms']:.2f} | {r['avg_ms']:.2f} | {r['load_ms']:.0f} | {rss} | |")
        else:
            lines.append(f"| {r['file']} | {r['model']} | {r['backend']} | {r['quant']} | - | - | - | - | - | "
                         f"{r['status']}: {r['reason']} |")
    for d in result["disabled_in_manifest"]:
        lines.append(f"| {d['file']} | | | | - | - | - | - | - | disabled in the manifest: {d['reason']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="local", help="local or adb:SERIAL")
    ap.add_argument("--build", required=True, help="a build folder written by `python -m export.build`")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="output stem (default bench_results/artifacts-<device>)")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.warmup < 0:
        print("error: --iters must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    try:
        result = run(args.device, args.build, args.iters, args.warmup)
    except ArtifactChanged as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stem = args.out or os.path.join("bench_results", "artifacts-" + args.device.replace(":", "_"))
    md = markdown(result)
    paths = write_report(stem, result, md)
    print(md)
    print("wrote " + " and ".join(paths) + (" (partial: the device was lost)" if result["device_lost"] else ""))
    if result["device_lost"]:
        print(f"error: {result['device_lost']}", file=sys.stderr)
        return 1
    return 1 if any(r["status"] == "error" for r in result["artifacts"]) else 0


if __name__ == "__main__":
    sys.exit(main())
