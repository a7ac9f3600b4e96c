"""ONNX (.onnx, one self-contained file) for ONNX Runtime and ONNX Runtime Mobile: fp32 or int8 (quant/onnx_quant.py)."""
from __future__ import annotations

import os
import tempfile

import torch

from quant import onnx_quant

from compkit.files import atomic_path

BACKEND = "onnx"
QUANTS = ("fp32",) + onnx_quant.QUANTS
OPSET = 18


def export(module, example_inputs, input_names, output_names, quant, out_path, calibration=None,
           step=lambda name: None) -> dict:
    if quant not in QUANTS:
        raise ValueError(f"ONNX quant must be one of {QUANTS}, not {quant!r}")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=out_dir) as tmp, atomic_path(out_path) as final:
        fp32 = final if quant == "fp32" else os.path.join(tmp, "fp32.onnx")
        step("export")
        with torch.no_grad():
            program = torch.onnx.export(module.eval(), tuple(example_inputs), input_names=list(input_names),
                                        output_names=list(output_names), opset_version=OPSET, dynamo=True,
                                        optimize=True, verbose=False)
        step("save")
        program.save(fp32, external_data=False)
        if quant != "fp32":
            step("quantize")
            onnx_quant.quantize(fp32, final, quant, calibration, input_names)
    return {"delegation": None, "runtime_imports": []}
