"""One Runner protocol over every runtime a compkit artifact runs on: eager PyTorch, ExecuTorch, ONNX Runtime,
CoreML. A runner takes named numpy inputs and returns named numpy outputs, exactly the tensors a phone app
feeds and reads, so host code (thresholding, top-k, word merging) never knows which runtime it talks to.

Inputs are checked against the artifact's spec (name, shape, dtype) before they reach the runtime, because
the runtimes' own errors are cryptic ("set_inputs() failed with error 0x12").
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Protocol, runtime_checkable

import numpy as np

from compkit.errors import CompkitError
from compkit.stats import median

# {input name: (shape, numpy dtype name)}; a dimension that is None (or a string, ONNX's symbolic dims) is free
InputSpec = dict[str, tuple[tuple, str]]

_DTYPES = {"int32", "int64", "float32", "float16"}
_ET_DTYPES = {3: "int32", 4: "int64", 5: "float16", 6: "float32"}  # c10::ScalarType codes
_ORT_DTYPES = {"tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(float)": "float32", "tensor(float16)": "float16"}
_COREML_DTYPES = {131104: "int32", 65568: "float32", 65552: "float16", 65600: "float64"}


class RunnerUnavailable(CompkitError, RuntimeError):
    """This artifact cannot run on this machine (e.g. CoreML off macOS); the message says where it can."""


class InputError(CompkitError, ValueError):
    """Inputs that do not match the artifact's spec; one line naming the input and what was expected."""


@runtime_checkable
class Runner(Protocol):
    name: str
    input_spec: InputSpec
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def normalize_spec(spec: dict) -> InputSpec:
    """Accept the manifest's JSON form {name: [[dims], "int32"]} as well as {name: ((dims), "int32")}."""
    out = {}
    for name, (shape, dtype) in spec.items():
        dtype = str(dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise ValueError(f"input {name!r}: unsupported dtype {dtype!r} (one of {sorted(_DTYPES)})")
        out[name] = (tuple(d if isinstance(d, int) and d >= 0 else None for d in shape), dtype)
    return out


def check_inputs(name: str, spec: InputSpec, inputs: dict[str, np.ndarray]) -> None:
    missing, extra = sorted(set(spec) - set(inputs)), sorted(set(inputs) - set(spec))
    if missing or extra:
        raise InputError(f"{name}: inputs {sorted(inputs)} do not match the artifact's {list(spec)}"
                         f"{f' (missing {missing})' if missing else ''}{f' (unexpected {extra})' if extra else ''}")
    for key, (shape, dtype) in spec.items():
        x = inputs[key]
        if not isinstance(x, np.ndarray):
            raise InputError(f"{name}: input {key!r} is a {type(x).__name__}; pass a numpy array of {dtype}")
        if x.dtype != np.dtype(dtype):
            raise InputError(f"{name}: input {key!r} is {x.dtype}, the artifact takes {dtype}: cast it with .astype(np.{dtype})")
        if len(x.shape) != len(shape) or any(d is not None and d != s for d, s in zip(shape, x.shape)):
            want = tuple("?" if d is None else d for d in shape)
            raise InputError(f"{name}: input {key!r} has shape {tuple(x.shape)}, the artifact takes {want}"
                             " (artifacts have fixed shapes: pad to them)")


class BaseRunner:
    """Shared checking and naming; subclasses implement _run(list of arrays in spec order) -> list of arrays."""

    name: str
    input_spec: InputSpec
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_inputs(self.name, self.input_spec, inputs)
        outs = self._run([np.ascontiguousarray(inputs[k]) for k in self.input_spec])
        if len(outs) != len(self.output_names):
            raise RuntimeError(f"{self.name}: returned {len(outs)} outputs, its spec names {len(self.output_names)} {self.output_names}")
        return dict(zip(self.output_names, outs))

    def example_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs of the spec's shape (free dims as 1): ids in [0, 1000), an all-ones mask, N(0, 1) floats."""
        rng = np.random.default_rng(seed)
        out = {}
        for key, (shape, dtype) in self.input_spec.items():
            shape = tuple(d or 1 for d in shape)
            if "mask" in key:
                out[key] = np.ones(shape, dtype=dtype)
            elif dtype.startswith("int"):
                out[key] = rng.integers(0, 1000, shape).astype(dtype)
            else:
                out[key] = rng.standard_normal(shape).astype(dtype)
        return out

    def timings_ms(self, inputs: dict[str, np.ndarray] | None = None, runs: int = 5, warmup: int = 1) -> list[float]:
        """Wall time of each of `runs` calls of run() on this machine (warm-up runs first: they allocate and plan)."""
        inputs = inputs if inputs is not None else self.example_inputs()
        for _ in range(warmup):
            self.run(inputs)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.run(inputs)
            times.append((time.perf_counter() - t) * 1e3)
        return times

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def paired_latency_ms(runner, reference, inputs: dict[str, np.ndarray], runs: int = 5,
                      block: int = 5) -> tuple[float, float]:
    """Median wall time of one run() of `runner` and of `reference`, timed in alternating blocks of `block` calls.

    A shared or virtual machine's speed drifts over seconds: two back-to-back medians of the same pair were
    measured 2.2x and 2.4x apart in speed ratio (docs/BENCHMARKS.md). Alternating blocks expose both sides to the
    same drift. Not call by call: ONNX Runtime's, OpenMP's and XNNPACK's worker threads spin for a while after a
    call, and on 2 cores that stole up to 60% from whatever ran next; so each block starts with one untimed call
    that absorbs the other side's tail (and re-warms caches)."""
    times = ([], [])
    while len(times[0]) < runs:
        n = min(block, runs - len(times[0]))
        for side, r in zip(times, (runner, reference)):
            side += r.timings_ms(inputs, n, warmup=1)  # the warm-up call is the untimed switch
    return median(times[0]), median(times[1])


class EagerRunner(BaseRunner):
    """A torch module called with its inputs in spec order; the reference every artifact is compared against."""

    def __init__(self, module, input_spec: dict, output_names: list[str], name: str = "eager"):
        import torch

        self.torch = torch
        self.module = module.eval()
        self.input_spec = normalize_spec(input_spec)
        self.output_names = list(output_names)
        self.name = name

    def _run(self, arrays):
        with self.torch.no_grad():
            out = self.module(*(self.torch.from_numpy(a) for a in arrays))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [t.detach().numpy() for t in out]


class ExecuTorchRunner(BaseRunner):
    """A .pte through the executorch Python runtime, method "forward"."""

    def __init__(self, path, output_names: list[str] | None = None, input_spec: dict | None = None,
                 delegate: str | None = None, threads: int | None = None):
        """delegate: a backend the program needs registered (checked here, with a clear error); threads: unused,
        XNNPACK picks its own."""
        import torch

        self.torch, self.name = torch, os.path.basename(os.fspath(path))
        try:  # registers the quantized_decomposed kernels that 8-bit-embedding .pte files call
            import executorch.kernels.quantized  # noqa: F401
        except ImportError:
            pass
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        if delegate and not runtime.backend_registry.is_available(delegate):
            raise RunnerUnavailable(f"{self.name}: the {delegate} delegate needs macOS/iOS: this executorch runtime has "
                                    f"only {runtime.backend_registry.registered_backend_names}; run it on a Mac or an iPhone")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name}: no such .pte file: {path}")
        self.program = runtime.load_program(os.fspath(path))
        if "forward" not in self.program.method_names:
            raise ValueError(f"{self.name}: the program has no 'forward' method (has {sorted(self.program.method_names)})")
        meta = self.program.metadata("forward")
        own = {f"input_{i}": (tuple(meta.input_tensor_meta(i).sizes()), _ET_DTYPES.get(meta.input_tensor_meta(i).dtype(), "?"))
               for i in range(meta.num_inputs())}
        self.input_spec = normalize_spec(input_spec) if input_spec is not None else own
        if len(self.input_spec) != len(own):
            raise ValueError(f"{self.name}: the program takes {len(own)} inputs, the spec names {len(self.input_spec)}")
        for (key, (shape, dtype)), (eshape, edtype) in zip(self.input_spec.items(), own.values()):
            if dtype != edtype or tuple(shape) != tuple(eshape):
                raise ValueError(f"{self.name}: spec says {key} is {list(shape)} {dtype}, the program takes {list(eshape)} {edtype}")
        self.output_names = list(output_names) if output_names else [f"output_{i}" for i in range(meta.num_outputs())]
        self.method = self.program.load_method("forward")

    def _run(self, arrays):
        out = self.method.execute([self.torch.from_numpy(a) for a in arrays])
        return [t.numpy().copy() for t in out]


class OnnxRunner(BaseRunner):
    """An .onnx through ONNX Runtime's CPU provider (what ONNX Runtime Mobile runs on a phone's CPU)."""

    def __init__(self, path, output_names: list[str] | None = None, input_spec: dict | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.name = os.path.basename(os.fspath(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{self.name}: no such .onnx file: {path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
        own = {i.name: (tuple(d if isinstance(d, int) else None for d in i.shape), _ORT_DTYPES.get(i.type, i.type))
               for i in self.session.get_inputs()}
        self.input_spec = normalize_spec(input_spec) if input_spec is not None else own
        if set(self.input_spec) != set(own):
            raise ValueError(f"{self.name}: spec names inputs {list(self.input_spec)}, the model takes {list(own)}")
        model_outputs = [o.name for o in self.session.get_outputs()]
        self.output_names = list(output_names) if output_names else model_outputs
        if not set(self.output_names) <= set(model_outputs):
            raise ValueError(f"{self.name}: spec names outputs {self.output_names}, the model gives {model_outputs}")

    def _run(self, arrays):
        return self.session.run(self.output_names, dict(zip(self.input_spec, arrays)))


class CoreMLRunner(BaseRunner):
    """An .mlpackage through coremltools' MLModel.predict, which Core ML only provides on macOS."""

    def __init__(self, path, output_names: list[str] | None = None, input_spec: dict | None = None,
                 compute_units: str = "CPU_ONLY", threads: int | None = None):
        self.name = os.path.basename(os.fspath(path).rstrip("/"))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{self.name}: no such .mlpackage directory: {path}")
        if sys.platform != "darwin":
            raise RunnerUnavailable(f"CoreML prediction needs macOS: {self.name} cannot run on {sys.platform} "
                                    "(Core ML exists only on Apple platforms); check it on a Mac with `python -m runtime_py.parity`")
        import coremltools as ct

        self.model = ct.models.MLModel(os.fspath(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        spec = self.model.get_spec().description
        own = {i.name: (tuple(i.type.multiArrayType.shape), _COREML_DTYPES.get(i.type.multiArrayType.dataType, "?"))
               for i in spec.input}
        self.input_spec = normalize_spec(input_spec) if input_spec is not None else own
        self.output_names = list(output_names) if output_names else [o.name for o in spec.output]

    def _run(self, arrays):
        out = self.model.predict(dict(zip(self.input_spec, arrays)))
        return [np.asarray(out[k], dtype=np.float32) for k in self.output_names]


def load_runner(build_dir, artifact: dict, threads: int | None = None) -> BaseRunner:
    """The runner for one manifest entry of a build folder (its backend's, export/backends.py), checked against
    the entry's input spec."""
    from export.backends import BACKENDS

    backend = BACKENDS.get(artifact.get("backend"))
    if backend is None:
        raise ValueError(f"{artifact.get('file')}: unknown backend {artifact.get('backend')!r} (one of {sorted(BACKENDS)})")
    for module in artifact.get("runtime_imports") or []:  # kernel libraries the artifact needs registered
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise RuntimeError(f"{artifact['file']} needs `import {module}` for its kernels, which fails: {e}") from None
    path = os.path.join(os.fspath(build_dir), artifact["file"])
    return backend.runner_class()(path, output_names=artifact.get("output_names"), input_spec=artifact.get("input_spec"),
                                  threads=threads, **backend.runner_options)
