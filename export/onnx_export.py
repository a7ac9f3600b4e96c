"""ONNX (.onnx, one self-contained file) for ONNX Runtime and ONNX Runtime Mobile: fp32 or int8 (quant/onnx_quant.py)."""
from __future__ import annotations

import os
import tempfile

import torch

from quant import onnx_quant

from compkit.files import atomic_path

from .backend import Backend

OPSET = 18


def export(module, example_inputs, input_names, output_names, recipe, out_path, calibration=None,
           mask_inputs=(), dynamic_shapes=None, step=lambda name: None) -> dict:
    recipe = BACKEND.recipe(recipe)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=out_dir) as tmp, atomic_path(out_path) as final:
        fp32 = final if recipe.quantize is None else os.path.join(tmp, "fp32.onnx")
        step("export")
        with torch.no_grad():
            program = torch.onnx.export(module.eval(), tuple(example_inputs), input_names=list(input_names),
                                        output_names=list(output_names), opset_version=OPSET, dynamo=True,
                                        optimize=True, verbose=False)
        step("save")
        # torch records each node's Python stack trace (absolute source paths, line numbers): dropped, so the
        # file names nothing of the machine that built it and the same module gives the same bytes anywhere
        for node in program.model.graph.all_nodes():
            node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)
        program.save(fp32, external_data=False)
        if recipe.quantize is not None:
            step("quantize")
            recipe.quantize(fp32, final, calibration, input_names)
    return {"delegation": None, "runtime_imports": []}


BACKEND = Backend("onnx", "onnx", "onnxruntime", onnx_quant.RECIPES, export, runner="runtime_py.runners:OnnxRunner",
                  on_device="host", not_on_device="not on device: compkit has no onnxruntime runner for phones (timed only with --device local)")
