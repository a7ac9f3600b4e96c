"""CoreML ML Program (.mlpackage) for iOS / macOS: fp16, int8 weights or 4-bit palettized (quant/coreml_optimize.py).

Converts a torch.export program (coremltools' supported path; a jit trace of HF BERT fails on an int cast),
with named inputs and outputs; int32 ids stay int32. Conversion, compression and spec
validation run on Linux; prediction needs macOS (coremltools: "Model prediction is only supported on macOS").
"""
from __future__ import annotations

import numpy as np
import torch

from quant import coreml_optimize

from .files import atomic_path

BACKEND = "coreml"
QUANTS = ("fp16", "fp32") + coreml_optimize.QUANTS
_NP = {torch.int32: np.int32, torch.int64: np.int64, torch.float32: np.float32, torch.float16: np.float16}


def export(module, example_inputs, input_names, output_names, quant, out_path, calibration=None,
           step=lambda name: None) -> dict:
    import coremltools as ct

    if quant not in QUANTS:
        raise ValueError(f"CoreML quant must be one of {QUANTS}, not {quant!r}")
    step("export")
    with torch.no_grad():
        program = torch.export.export(module.eval(), tuple(example_inputs)).run_decompositions({})
    step("lower")
    inputs = [ct.TensorType(name=n, shape=tuple(t.shape), dtype=_NP[t.dtype]) for n, t in zip(input_names, example_inputs)]
    mlmodel = ct.convert(program, inputs=inputs, outputs=[ct.TensorType(name=n) for n in output_names],
                         convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                         compute_precision=ct.precision.FLOAT32 if quant == "fp32" else ct.precision.FLOAT16)
    if quant in coreml_optimize.QUANTS:
        step("quantize")
        mlmodel = coreml_optimize.compress(mlmodel, quant)
    step("save")
    with atomic_path(out_path, directory=True) as tmp:
        mlmodel.save(tmp)
    return {"delegation": None, "runtime_imports": [], "predict_requires": "macOS (coremltools prediction)"}
