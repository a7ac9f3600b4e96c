""".pte files timed on a Device by the native runner (bench_device/runner): stage the runner and the model once
(sha256-verified pushes), write inputs as raw files, run, parse the runner's JSON, optionally pull outputs.
The pipeline calls run the runner's pipeline mode: the whole MOOSComp / EvoComp compression on the device
(runtime_cpp's core), timed per stage.

On LocalDevice the runner and models run in place (a 1B-class fp32 .pte is 5 GB: copying it proves nothing).
Which runner a device gets follows its ABI: a device of this host's ABI (an x86_64 emulator, the loopback
device of the tests) the host's binary; an arm64-v8a phone the self-contained arm64 bundle
(bench_device/runner_bundle.py), pushed once and started through its launcher.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from pathlib import Path

import numpy as np

from compkit.errors import CompkitError
from compkit.files import sha256_path as sha256_file
from .devices import Device, DeviceError, LocalDevice, host_abi


class RunnerFailed(CompkitError, RuntimeError):
    """The runner ran but reported an error; the message is its one line."""


class DeviceRunner:
    def __init__(self, device: Device, runner_binary: str | os.PathLike | None = None, threads: int | None = None,
                 timeout: float = 1800.0):
        self.device, self.threads, self.timeout = device, threads, timeout
        self.local = isinstance(device, LocalDevice)
        self._staged: dict[tuple, str] = {}
        # the argv that starts the runner on the device: a binary, or `sh LAUNCHER` for a bundle
        self.command = [self.stage(runner_binary, executable=True)] if runner_binary else self._runner_for_abi()

    def _runner_for_abi(self) -> list[str]:
        from .build_runner import ensure_runner
        from .runner_bundle import TARGETS, ensure_bundle

        abi, host = self.device.abi(), host_abi()
        if abi == host:
            return [self.stage(ensure_runner(), executable=True)]
        if abi not in TARGETS:
            raise DeviceError(f"{self.device.name} has ABI {abi!r}: compkit builds runners for {host} (this "
                              f"machine) and {', '.join(TARGETS)} only; use a device of one of those")
        bundle = ensure_bundle(abi)
        return ["sh", self.device.install_bundle(bundle.path, bundle.digest, bundle.launcher.name)]

    def stage(self, path: str | os.PathLike, executable: bool = False) -> str:
        """The device path of a local file, pushing it (once per content) when the device is remote."""
        path = Path(path).resolve()
        if not path.is_file():
            raise DeviceError(f"cannot stage {path}: no such file")
        if self.local:
            return str(path)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._staged:
            # content-addressed names: two different model.pte files never overwrite each other
            remote = f"{sha256_file(path)[:12]}_{path.name}"
            self._staged[key] = self.device.push(path, remote)
            if executable:
                self.device.run(["chmod", "755", self._staged[key]], check=True)
        return self._staged[key]

    def stage_dir(self, path: str | os.PathLike) -> str:
        """The device path of a local folder's files (a tokenizer folder), pushed once per content."""
        path = Path(path).resolve()
        if not path.is_dir():
            raise DeviceError(f"cannot stage {path}: no such folder")
        if self.local:
            return str(path)
        files = sorted(p for p in path.iterdir() if p.is_file())
        digest = hashlib.sha256("".join(f"{p.name}:{sha256_file(p)};" for p in files).encode()).hexdigest()
        key = (str(path), digest)
        if key not in self._staged:
            remote = f"{digest[:12]}_{path.name}"
            for f in files:
                self.device.push(f, f"{remote}/{f.name}")
            self._staged[key] = self.device.remote_path(remote)
        return self._staged[key]

    def run(self, pte: str | os.PathLike, inputs: dict[int, np.ndarray] | None = None, *, ones=(), iters: int = 10,
            warmup: int = 2, vocab: int | None = None, outputs: bool = False) -> dict:
        """Run `pte` on the device; inputs by index (raw little-endian, shape given to the runner). Returns the
        runner's JSON, plus "output_arrays" (list of numpy arrays of the last timed call) when outputs=True."""
        model = self.stage(pte)
        with tempfile.TemporaryDirectory(prefix="compkit-inputs-") as tmp:
            per_call = []
            argv = ["--model", model, "--iters", str(iters), "--warmup", str(warmup)]
            argv += self._input_args(inputs, Path(tmp), per_call)
            for index in ones:
                argv += ["--ones", str(index)]
            if vocab:
                argv += ["--vocab", str(vocab)]
            out_dir = None
            if outputs:
                out_dir = str(Path(tmp) / "out") if self.local else posixpath.join(self.device.workdir, "out")
                argv += ["--output-dir", out_dir]
            result = self._invoke(argv, Path(pte).name, per_call)
            if outputs:
                result["output_arrays"] = self._outputs(result, out_dir, Path(tmp))
        return result

    def moos_pipeline(self, ptes, tokenizer_dir, text: str, rate: float, *, iters: int = 5, warmup: int = 1,
                      outlier_weight: float = 0.0, force_tokens=()) -> dict:
        """The whole MOOSComp compression of `text` on the device (tokenize, one forward per window at the
        smallest bucket .pte that holds it, word selection). The JSON holds "compressed" and per-stage times."""
        argv = [a for pte in ptes for a in ("--model", self.stage(pte))]
        argv += ["--pipeline", "moos", "--tokenizer", self.stage_dir(tokenizer_dir), "--rate", repr(float(rate)),
                 "--outlier-weight", repr(float(outlier_weight)), "--iters", str(iters), "--warmup", str(warmup)]
        for token in force_tokens:
            argv += ["--force", token]
        with tempfile.TemporaryDirectory(prefix="compkit-text-") as tmp:
            per_call = []
            local = Path(tmp) / f"prompt_{os.getpid()}.txt"
            local.write_text(text, encoding="utf-8")
            argv += ["--text-file", self._stage_once(local, per_call)]
            return self._invoke(argv, f"the moos pipeline over {Path(ptes[0]).name}", per_call)

    def evo_pipeline(self, pte, *, ratio: float = 3.0, inputs: dict[int, np.ndarray] | None = None, iters: int = 5,
                     warmup: int = 1) -> dict:
        """EvoComp on the device: forward, top-k (compkit's tie rule) and the gather of the kept visual tokens.
        Inputs not given are random (text_mask: ones). The JSON holds "kept_indices" and per-stage times."""
        argv = ["--pipeline", "evo", "--model", self.stage(pte), "--ratio", repr(float(ratio)),
                "--iters", str(iters), "--warmup", str(warmup)]
        with tempfile.TemporaryDirectory(prefix="compkit-inputs-") as tmp:
            per_call = []
            argv += self._input_args(inputs, Path(tmp), per_call)
            return self._invoke(argv, Path(pte).name, per_call)

    def _input_args(self, inputs: dict[int, np.ndarray] | None, tmp: Path, per_call: list[str]) -> list[str]:
        """Runner flags for input arrays: raw little-endian files with their shapes."""
        argv = []
        for index, array in (inputs or {}).items():
            array = np.ascontiguousarray(array)
            local = tmp / f"input_{index}_{os.getpid()}.bin"
            local.write_bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
            argv += ["--input", f"{index}={self._stage_once(local, per_call)}", "--shape",
                     f"{index}={'x'.join(map(str, array.shape))}"]
        return argv

    def _stage_once(self, local: Path, per_call: list[str]) -> str:
        """A file used by one call only: its device path, noted in per_call for removal after the call."""
        if self.local:
            return str(local)
        remote = self.stage(local)
        per_call.append(remote)
        return remote

    def _invoke(self, args: list[str], what: str, per_call: list[str]) -> dict:
        """Run the runner with args; its JSON, or RunnerFailed with its one-line error. per_call files are
        removed from the device afterwards: they differ per call and must not pile up on the phone."""
        argv = [*self.command, *args] + (["--threads", str(self.threads)] if self.threads else [])
        self._staged = {k: v for k, v in self._staged.items() if v not in per_call}
        r = self.device.run(argv, timeout=self.timeout)  # a dead device raises here: nothing left to clean
        for remote in per_call:
            self.device.run(["rm", "-f", remote])
        if r.code != 0:
            line = [x for x in r.stderr.splitlines() if x.strip()] or ["no output"]
            raise RunnerFailed(f"{self.device.name}: runner failed on {what}: {line[-1].strip()}")
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise RunnerFailed(f"{self.device.name}: runner printed no JSON for {what}: {r.stdout[:120]!r}") from None

    def _outputs(self, result: dict, out_dir: str, tmp: Path) -> list[np.ndarray]:
        arrays = []
        for o in result.get("outputs", []):
            if "shape" not in o:
                continue
            name = f"output_{o['index']}.bin"
            local = Path(out_dir) / name if self.local else self.device.pull(posixpath.join(out_dir, name), tmp / name)
            arrays.append(np.fromfile(local, dtype=np.dtype(o["dtype"]).newbyteorder("<")).reshape(o["shape"]))
        return arrays


def latency_ms(result: dict) -> float:
    """The figure quoted everywhere: the median of the runner's timed calls."""
    return float(result["median_inference_latency(ms)"])
