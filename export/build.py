"""python -m export.build --target {android,ios,desktop,all}: export, quantize and parity-check both compressors.

Writes one build folder (docs/ARTIFACTS.md), claimed with a lock file: every artifact (atomically), the MOOSComp
tokenizer, manifest.json (rewritten after every artifact with "complete": false, set true only when the export
finished); then runs `python -m runtime_py.parity BUILD --record` in a subprocess (export never imports
runtime_py) and exits with its code. SIGINT / SIGTERM stop it within seconds (docs/RELIABILITY.md). Without
checkpoints the embedded defaults are used (MOOSComp: the GSM8K-trained MiniLM-L6; EvoComp: the easy-VQA-trained
default_evo()).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

from . import parallel
from .backends import get_backend
from compkit.files import sha256_path, size_bytes, write_json
from compkit.errors import CompkitError
from compkit.schema import validate_manifest
from compressors.spec import CheckpointRefused, OptionRefused, get_spec, registry

from .targets import DEFAULT_SEQ_LENS, TARGETS, artifact_name, plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_BUCKET = 16
STEPS = ("quantize", "export", "lower", "save")
TOOLS = ("torch", "executorch", "onnxruntime", "onnx", "coremltools", "transformers")


LOCK = ".compkit-export.lock"  # the claim of one export on its build folder, removed when that export ends


class BadInput(CompkitError):
    """Bad command-line input: printed as one line, exit 2, nothing written."""


class BuildFailed(CompkitError):
    """The build could not go on (the disk is full, the folder vanished): one line, exit 1."""


class Stopped(BaseException):  # not an Exception: an artifact's `except Exception` must not swallow it
    """SIGINT or SIGTERM: the export stops now and leaves its folder marked incomplete."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


class ArgParser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise BadInput(f"{message} (see `python -m export.build --help`)")


def parse_args(argv):
    ap = ArgParser(prog="python -m export.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="android", help=f"one of {sorted(TARGETS)} (default android)")
    specs = registry()
    ap.add_argument("--model", default="all", help=f"{', '.join(specs)} or all (default all)")
    for spec in specs.values():
        ap.add_argument(f"--{spec.name}-checkpoint", metavar="DIR", help=spec.checkpoint_help)
    ap.add_argument("--quant", metavar="A,B", help="only these quant recipes, e.g. fp32,int8dyn")
    ap.add_argument("--seq-lens", default=",".join(map(str, DEFAULT_SEQ_LENS)), metavar="L,L",
                    help="sequence-length buckets of the bucketed compressors (MOOSComp; >= 16)")
    ap.add_argument("--visual-tokens", type=int, default=None, metavar="N", help="EvoComp visual tokens per image (default: the EvoComp config's max_visual_tokens)")
    ap.add_argument("--out", metavar="DIR", help="build folder (default artifacts/YYYYMMDD-HHMMSS-TARGET); must not "
                    "exist or be empty")
    ap.add_argument("--allow-disabled", action="store_true", help="exit 0 even when artifacts fail parity")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), metavar="N",
                    help="artifacts exported at once, in forked worker processes (default: the cores, at most 4)")
    ap.add_argument("--skip-parity", action="store_true", help=argparse.SUPPRESS)  # tests of export alone
    args = ap.parse_args(argv)

    if args.target not in TARGETS:
        raise BadInput(f"unknown target {args.target!r}: choose one of {', '.join(sorted(TARGETS))}")
    if args.model not in tuple(specs) + ("all",):
        raise BadInput(f"unknown model {args.model!r}: choose {', '.join(specs)} or all")
    args.models = tuple(specs) if args.model == "all" else (args.model,)
    try:
        args.seq_lens = sorted({int(s) for s in args.seq_lens.split(",") if s.strip()})
    except ValueError:
        raise BadInput(f"--seq-lens must be comma-separated integers, not {args.seq_lens!r}") from None
    if not args.seq_lens:
        raise BadInput("--seq-lens is empty: give at least one bucket, e.g. 128,256,512")
    if args.seq_lens[0] < MIN_BUCKET:
        raise BadInput(f"bucket {args.seq_lens[0]} is smaller than {MIN_BUCKET}: [CLS] + [SEP] leave too few pieces; "
                       f"use --seq-lens of at least {MIN_BUCKET}")
    known = {r.quant for r in TARGETS[args.target]}
    args.quants = [q.strip() for q in args.quant.split(",") if q.strip()] if args.quant is not None else None
    if args.quants == []:
        raise BadInput(f"--quant {args.quant!r} names no recipe: give e.g. fp32,int8dyn, or leave it out for the default")
    for q in args.quants or []:
        if q not in known:
            raise BadInput(f"--quant {q!r} is not built for target {args.target}: choose from {', '.join(sorted(known))}")
    args.checkpoints = {name: getattr(args, f"{name}_checkpoint") for name in specs}
    for name, path in args.checkpoints.items():
        if path is not None and not os.path.isdir(path):
            raise BadInput(f"--{name}-checkpoint {path}: directory not found")
    if args.jobs < 1:
        raise BadInput(f"--jobs must be >= 1, not {args.jobs}")
    if args.visual_tokens is not None and args.visual_tokens < 1:
        raise BadInput(f"--visual-tokens must be >= 1, not {args.visual_tokens}")
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = os.path.join(ROOT, "artifacts", f"{stamp}-{args.target}")
    args.out = os.path.abspath(args.out)
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        refuse_dead_lock(args.out)
        raise BadInput(f"--out {args.out} exists and is not an empty folder: choose a new folder")
    return args


def refuse_dead_lock(path: str) -> None:
    """Refuse a folder whose lock outlived its export (SIGKILL cannot remove it), saying so."""
    pid = dead_lock_owner(path)
    if pid is not None:
        raise BadInput(f"--out {path} holds what an export killed before it finished left behind (its {LOCK} "
                       f"names pid {pid}, which is not running): delete the folder or choose a new one")


def dead_lock_owner(path: str) -> int | None:
    """The pid in path's lock file when no such process runs, else None: no lock, a live owner, or a lock that
    names no pid."""
    try:
        with open(os.path.join(path, LOCK)) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:  # alive, another user's
        return None
    return None


def claim_out_dir(path: str) -> list[str]:
    """Create the build folder (and missing parents) and claim it for this export alone: the lock file is
    created with O_EXCL, so of two exports racing for one folder exactly one wins; the other is refused with
    nothing touched. Returns the folders created, to remove (if still empty) on failure."""
    created, p = [], path
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        refuse_dead_lock(path)
        raise BadInput(f"--out {path} is being written by another export ({LOCK} exists): choose a new folder") from None
    except OSError as e:
        remove_dirs(created)
        raise BadInput(f"--out {path} is not writable ({e.strerror or e}): choose a folder you can write to") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    others = sorted(set(os.listdir(path)) - {LOCK})
    if others:  # another export claimed, wrote and finished between our argument check and our claim
        release_out_dir(path)
        raise BadInput(f"--out {path} exists and is not an empty folder (it now holds {others[0]}): choose a new folder")
    return created


def release_out_dir(path: str) -> None:
    try:
        os.remove(os.path.join(path, LOCK))
    except OSError:
        pass


def remove_leftovers(out_dir: str, unlisted: list[str]) -> None:
    """The folder was empty when claimed, so every hidden entry but the lock is a temp path of this export's,
    and each of `unlisted` (planned artifacts the manifest does not list) is this export's too."""
    for name in os.listdir(out_dir):
        if (name.startswith(".") and name != LOCK) or name in unlisted:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)


def remove_dirs(created: list[str]) -> None:
    for d in created:  # deepest first; only empty ones: another process may be using a folder we just made
        try:
            os.rmdir(d)
        except OSError:
            return


# ------------------------------------------------------------------------------------------------ models
@dataclasses.dataclass
class ModelJob:
    """One compressor ready to export: its spec (compressors/spec.py) and what the spec loaded."""

    spec: object
    loaded: object  # compressors.spec.Loaded
    _factors: dict = None

    name = property(lambda self: self.spec.name)
    module = property(lambda self: self.loaded.module)
    input_names = property(lambda self: list(self.spec.input_names))
    output_names = property(lambda self: self.loaded.output_names)
    info = property(lambda self: self.loaded.info)
    example = property(lambda self: self.loaded.example)
    calibration = property(lambda self: self.loaded.calibration)
    source = property(lambda self: self.loaded.source)

    def smoothed(self, recipe) -> bool:
        """SmoothQuant first (quant/smoothquant.py) when both the compressor and the quant recipe ask for it."""
        return self.spec.smoothquant and recipe.smoothquant

    def smoothing_factors(self) -> dict:
        """SmoothQuant's factors, measured once on the largest bucket's calibration inputs (they serve every
        bucket); the build measures them before it forks its export workers, so they share one copy."""
        from quant import smoothquant

        if self._factors is None:
            buckets = self.info.get("buckets") or [None]
            self._factors = smoothquant.smoothing_factors(self.module, self.calibration(buckets[-1]))
        return self._factors

    def module_for(self, recipe):
        """The module to export: SmoothQuant-rescaled when both this model and the recipe ask for it."""
        if not self.smoothed(recipe):
            return self.module
        from quant import smoothquant

        return smoothquant.smooth_linears(self.module, self.smoothing_factors())

    def export(self, backend, recipe, bucket, out_path, step=lambda name: None, on_step=lambda name: None,
               entry=None, example=None) -> dict:
        """Export one artifact of this compressor, exactly as a build does (the e2e benchmark calls this too):
        calibration inputs when the recipe needs them, SmoothQuant when both ask for it, the spec's masks kept
        in float. `on_step(name)` hears the pre-export stages (smoothquant) that `step` does not count."""
        example = tuple(self.example(bucket)) if example is None else example
        calibration = self.calibration(bucket) if recipe.calibrated else None
        if self.smoothed(recipe):
            from quant.smoothquant import ALPHA

            on_step("smoothquant")
            if entry is not None:
                entry["smoothquant_alpha"] = ALPHA
        return backend.export(self.module_for(recipe), example, self.input_names, self.output_names, recipe, out_path,
                              calibration=calibration, mask_inputs=self.spec.mask_inputs, step=step)


def load_job(name: str, checkpoint: str | None, options: dict) -> ModelJob:
    spec = get_spec(name)
    try:
        return ModelJob(spec, spec.load(checkpoint, options))
    except CheckpointRefused as e:
        raise BadInput(f"--{name}-checkpoint: {e}") from None
    except OptionRefused as e:
        raise BadInput(str(e)) from None


# ------------------------------------------------------------------------------------------------ build
def tool_versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def new_entry(job: ModelJob, recipe, bucket, example=None) -> dict:
    """An artifact's manifest entry before its export: name, spec, and empty results."""
    example = tuple(job.example(bucket)) if example is None else example
    return {"file": artifact_name(recipe.model, recipe.backend, recipe.quant, bucket), "model": recipe.model,
            "backend": recipe.backend, "quant": recipe.quant, "bucket": bucket,
            "input_spec": {n: [list(t.shape), dtype_name(t)] for n, t in zip(job.input_names, example)},
            "output_names": job.output_names, "size_bytes": None, "sha256": None, "delegation": None,
            "runtime_imports": [], "build_seconds": None, "parity": None, "latency_ms": None,
            "enabled": True, "disabled_reason": None}


def build_artifact(job: ModelJob, recipe, bucket, out_dir, progress) -> dict:
    """Export one artifact; return its manifest entry (enabled false + reason when a step failed)."""
    example = tuple(job.example(bucket))
    entry = new_entry(job, recipe, bucket, example)
    name = entry["file"]
    current = {"step": "export"}

    def step(s):
        current["step"] = s
        progress.set_postfix_str(s)
        progress.update(1)

    start, cpu_start = time.perf_counter(), time.process_time()
    backend = get_backend(recipe.backend)
    quant = backend.recipe(recipe.quant)
    try:
        info = job.export(backend, quant, bucket, os.path.join(out_dir, name), step=step,
                          on_step=lambda s: current.update(step=s), entry=entry, example=example)
    except Exception as e:  # recorded, reported, and the build goes on to the next artifact
        msg = f"{name}: {current['step']} failed: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        progress.write(f"ERROR {msg}")
        if os.environ.get("COMPKIT_TRACEBACK"):
            progress.write(traceback.format_exc())
        entry.update(enabled=False, disabled_reason=f"export failed: {msg}", export_error=True)
        return entry
    path = os.path.join(out_dir, name)
    entry.update(size_bytes=size_bytes(path), sha256=sha256_path(path), delegation=info.get("delegation"),
                 runtime_imports=info.get("runtime_imports", []), build_seconds=round(time.perf_counter() - start, 1),
                 build_cpu_seconds=round(time.process_time() - cpu_start, 1))
    if info.get("predict_requires"):
        entry["predict_requires"] = info["predict_requires"]
    return entry


def write_manifest(out_dir, manifest) -> None:
    """Atomically: a failed write (a full disk) leaves the previous manifest.json whole, and says so in one line."""
    path = os.path.join(out_dir, "manifest.json")
    validate_manifest(manifest, path)  # a field off the schema is compkit's bug: it must never reach a reader
    try:
        write_json(path, manifest)
    except OSError as e:
        kept = "the previous one is intact" if os.path.exists(path) else "none was written"
        raise BuildFailed(f"cannot write {path} ({e.strerror or e}); {kept}: free space and rebuild into a new "
                          "folder") from None


def run_parity(out_dir, allow_disabled) -> int:
    if importlib.util.find_spec("runtime_py.parity") is None:
        print("WARNING: runtime_py.parity is not available yet: parity and latency were NOT measured; "
              "artifacts stay enabled unchecked", file=sys.stderr)
        return 0
    cmd = [sys.executable, "-m", "runtime_py.parity", out_dir, "--record"] + (["--allow-disabled"] if allow_disabled else [])
    print(f"parity: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def fmt_size(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def summary_table(manifest) -> str:
    rows = [("artifact", "size", "latency", "parity", "enabled")]
    for a in manifest["artifacts"]:
        parity = a.get("parity")
        verdict = "-" if not parity else {"pass": "pass", "failed": "FAIL"}.get(parity.get("status"), parity.get("status", "-"))
        lat = a.get("latency_ms")
        lat = "-" if lat is None else f"{lat['median'] if isinstance(lat, dict) else lat:.1f} ms"
        enabled = "yes" if a.get("enabled") else f"no ({a.get('disabled_reason') or ''})"[:70]
        rows.append((a["file"], fmt_size(a.get("size_bytes")), lat, verdict, enabled))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def build(args) -> int:
    # Load (and so validate) every model before anything is written.
    jobs = {}
    options = {"seq_lens": args.seq_lens, "visual_tokens": args.visual_tokens}
    for name in args.models:
        jobs[name] = load_job(name, args.checkpoints[name], options)
    work = plan(args.target, args.models, args.quants, args.seq_lens)
    if not work:
        raise BadInput(f"nothing to build for --target {args.target} --model {args.model} --quant {args.quant}")
    claim_out_dir(args.out)
    args.claimed = True
    for job in jobs.values():
        print(f"{job.name}: {job.info['provenance']}", flush=True)

    manifest = {"schema": 1, "target": args.target, "complete": False,
                "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "compkit_revision": git_revision(), "tool_versions": tool_versions(),
                "models": {name: job.info for name, job in jobs.items()}, "artifacts": []}
    write_manifest(args.out, manifest)  # at once: a folder stopped before its first artifact says it is incomplete
    try:
        export_all(args, jobs, work, manifest)
    except Stopped as e:
        done = sum(1 for a in manifest["artifacts"] if not a.get("export_error"))
        manifest["stopped"] = f"{e.name} after {done}/{len(work)} artifacts"
        write_manifest(args.out, manifest)
        # temp paths of a worker killed mid-write, and artifacts a worker finished whose result never reached us
        planned = {artifact_name(r.model, r.backend, r.quant, b) for r, b in work}
        remove_leftovers(args.out, sorted(planned - {a["file"] for a in manifest["artifacts"]}))
        raise
    args.phase = "parity"
    failed = [a["file"] for a in manifest["artifacts"] if a.get("export_error")]
    print(f"exported {len(work) - len(failed)}/{len(work)} artifacts in {manifest['export_seconds']:.0f} s to {args.out}",
          flush=True)

    code = 0 if args.skip_parity else run_parity(args.out, args.allow_disabled)
    with open(os.path.join(args.out, "manifest.json"), encoding="utf-8") as f:
        print(summary_table(json.load(f)))
    if failed:
        print(f"error: {len(failed)} artifact(s) failed to export: {', '.join(failed)} (reasons above and in "
              "manifest.json)", file=sys.stderr)
        return 1
    return code


def export_all(args, jobs, work, manifest) -> None:
    """Every artifact (rewriting the manifest after each), the shared vectors, then the completion mark."""
    started = time.perf_counter()
    for name in {r.model for r, _ in work if jobs[r.model].smoothed(get_backend(r.backend).recipe(r.quant))}:
        jobs[name].smoothing_factors()  # before the workers fork: measured once, shared by all of them
    entries = [None] * len(work)

    def finished(i, entry):
        recipe, bucket = work[i]
        if entry is None:  # its worker died
            entry = new_entry(jobs[recipe.model], recipe, bucket)
            entry.update(enabled=False, disabled_reason="export failed: the export worker died (out of memory? "
                         "retry with --jobs 1)", export_error=True)
        entries[i] = entry
        manifest["artifacts"] = [e for e in entries if e is not None]  # in plan order
        write_manifest(args.out, manifest)  # after every artifact, so an interrupted build is still readable

    names = [artifact_name(r.model, r.backend, r.quant, b) for r, b in work]
    parallel.run_all(work, lambda task, bar: build_artifact(jobs[task[0].model], task[0], task[1], args.out, bar),
                     args.jobs, names, len(STEPS), finished, poll=args.check_stop)
    for job in jobs.values():  # tokenizer folders, the shared test vectors
        if job.loaded.write_files:
            job.loaded.write_files(job.loaded, args.out, {n: j.loaded for n, j in jobs.items()})
    manifest["export_seconds"] = round(time.perf_counter() - started, 1)
    manifest["complete"] = True  # only now: every listed artifact is final and nothing else is still coming
    write_manifest(args.out, manifest)


def quiet_known_noise() -> None:
    """Silence warnings the toolchain prints by the hundred and that say nothing about this build
    (deprecations inside torch/executorch/torchao, coremltools' untested-torch notice); errors still show."""
    import logging
    import warnings

    for category in (FutureWarning, DeprecationWarning, UserWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("coremltools", "executorch", "torchao", "torch._export", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def stop_on_signals():
    """SIGINT and SIGTERM raise Stopped once (a second signal while stopping is ignored), so the temp paths of
    what is being written unwind and the workers are ended. Returns (check, restore): check() raises Stopped
    if a signal came but its exception was swallowed (Python ignores exceptions raised in __del__ and at-fork
    hooks); restore() puts the old handlers back."""
    import signal

    state = {"signum": None}

    def handler(signum, frame):
        if state["signum"] is None:
            state["signum"] = signum
            raise Stopped(signum)

    def check():
        if state["signum"] is not None:
            raise Stopped(state["signum"])

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return check, lambda: [signal.signal(s, h) for s, h in old.items()]


def main(argv=None) -> int:
    quiet_known_noise()
    check_stop, restore = stop_on_signals()
    args = None
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        args.check_stop = check_stop
        return build(args)
    except BadInput as e:
        print(f"export.build: error: {e}", file=sys.stderr)
        return 2
    except BuildFailed as e:
        print(f"export.build: error: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        if getattr(args, "phase", None) == "parity":
            where = (f"the export in {args.out} is complete but its parity was not recorded: run "
                     f"`python -m runtime_py.parity {args.out} --record`")
        elif getattr(args, "claimed", False):
            where = f"{args.out} is marked incomplete (manifest.json \"complete\": false); rebuild into a new folder"
        else:
            where = "nothing was written"
        print(f"export.build: stopped by {e.name}: {where}", file=sys.stderr)
        return 128 + e.signum
    finally:
        if getattr(args, "claimed", False):
            release_out_dir(args.out)
        restore()


if __name__ == "__main__":
    sys.exit(main())
