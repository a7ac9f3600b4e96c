""".pte files timed on a Device by the native runner (bench_device/runner): stage the runner and the model once
(sha256-verified pushes), write inputs as raw files, run, parse the runner's JSON, optionally pull outputs.

On LocalDevice the runner and models run in place (a 1B-class fp32 .pte is 5 GB: copying it proves nothing).
The runner built for this host plays the phone's runner on the loopback adb device of the tests.
"""
from __future__ import annotations

import json
import os
import posixpath
import tempfile
from pathlib import Path

import numpy as np

from .devices import Device, DeviceError, LocalDevice, sha256_file


class RunnerFailed(RuntimeError):
    """The runner ran but reported an error; the message is its one line."""


class DeviceRunner:
    def __init__(self, device: Device, runner_binary: str | os.PathLike | None = None, threads: int | None = None,
                 timeout: float = 1800.0):
        if runner_binary is None:
            from .build_runner import ensure_runner

            runner_binary = ensure_runner()
        self.device, self.threads, self.timeout = device, threads, timeout
        self.local = isinstance(device, LocalDevice)
        self._staged: dict[tuple, str] = {}
        self.binary = self.stage(runner_binary, executable=True)

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

    def run(self, pte: str | os.PathLike, inputs: dict[int, np.ndarray] | None = None, *, ones=(), iters: int = 10,
            warmup: int = 2, vocab: int | None = None, outputs: bool = False) -> dict:
        """Run `pte` on the device; inputs by index (raw little-endian, shape given to the runner). Returns the
        runner's JSON, plus "output_arrays" (list of numpy arrays of the last timed call) when outputs=True."""
        model = self.stage(pte)
        with tempfile.TemporaryDirectory(prefix="compkit-inputs-") as tmp:
            argv = [self.binary, "--model", model, "--iters", str(iters), "--warmup", str(warmup)]
            staged = []
            for index, array in (inputs or {}).items():
                array = np.ascontiguousarray(array)
                local = Path(tmp) / f"input_{index}_{os.getpid()}.bin"
                local.write_bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
                remote = self.stage(local) if not self.local else str(local)
                staged.append(remote)
                argv += ["--input", f"{index}={remote}", "--shape", f"{index}={'x'.join(map(str, array.shape))}"]
            for index in ones:
                argv += ["--ones", str(index)]
            if vocab:
                argv += ["--vocab", str(vocab)]
            if self.threads:
                argv += ["--threads", str(self.threads)]
            out_dir = None
            if outputs:
                out_dir = str(Path(tmp) / "out") if self.local else posixpath.join(self.device.workdir, "out")
                argv += ["--output-dir", out_dir]
            r = self.device.run(argv, timeout=self.timeout)
            if r.code != 0:
                line = [x for x in r.stderr.splitlines() if x.strip()] or ["no output"]
                raise RunnerFailed(f"{self.device.name}: runner failed on {Path(pte).name}: {line[-1].strip()}")
            try:
                result = json.loads(r.stdout)
            except ValueError:
                raise RunnerFailed(f"{self.device.name}: runner printed no JSON for {Path(pte).name}: "
                                   f"{r.stdout[:120]!r}") from None
            if outputs:
                result["output_arrays"] = self._outputs(result, out_dir, Path(tmp))
            if not self.local:  # inputs differ per call: do not let them pile up on the phone
                for remote in staged:
                    self.device.run(["rm", "-f", remote])
                self._staged = {k: v for k, v in self._staged.items() if v not in staged}
        return result

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
