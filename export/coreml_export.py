"""CoreML ML Program (.mlpackage) for iOS / macOS: fp16, int8 weights or 4-bit palettized (quant/coreml_optimize.py).

Converts a torch.export program (coremltools' supported path; a jit trace of HF BERT fails on an int cast),
with named inputs and outputs; int32 ids stay int32. Conversion, compression and spec
validation run on Linux; prediction needs macOS (coremltools: "Model prediction is only supported on macOS").
"""
from __future__ import annotations

import numpy as np
import torch

from quant import coreml_optimize

from compkit.files import atomic_path

from .backend import Backend

_NP = {torch.int32: np.int32, torch.int64: np.int64, torch.float32: np.float32, torch.float16: np.float16}


def drop_aliases(program: torch.export.ExportedProgram) -> None:
    """Replace aten.alias nodes by their input. BERT slices its position-id buffer to the sequence length; at
    the full length (bucket 512 = max positions) the slice is a no-op that export records as an alias, which
    coremltools rejects ("Unsupported fx node alias"). An alias is the same tensor, so this changes nothing."""
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in (torch.ops.aten.alias.default, torch.ops.aten.alias_copy.default):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()


def export(module, example_inputs, input_names, output_names, recipe, out_path, calibration=None,
           mask_inputs=(), dynamic_shapes=None, step=lambda name: None) -> dict:
    import coremltools as ct

    recipe = BACKEND.recipe(recipe)
    precision = {"fp32": ct.precision.FLOAT32, "fp16": ct.precision.FLOAT16}[recipe.options["compute_precision"]]
    step("export")
    with torch.no_grad():
        program = torch.export.export(module.eval(), tuple(example_inputs)).run_decompositions({})
    drop_aliases(program)
    step("lower")
    inputs = [ct.TensorType(name=n, shape=tuple(t.shape), dtype=_NP[t.dtype]) for n, t in zip(input_names, example_inputs)]
    mlmodel = ct.convert(program, inputs=inputs, outputs=[ct.TensorType(name=n) for n in output_names],
                         convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                         compute_precision=precision)
    if recipe.quantize is not None:
        step("quantize")
        mlmodel = recipe.quantize(mlmodel)
    step("save")
    with atomic_path(out_path, directory=True) as tmp:
        mlmodel.save(tmp)
    return {"delegation": None, "runtime_imports": [], "predict_requires": "macOS (coremltools prediction)"}


BACKEND = Backend("coreml", "mlpackage", "Core ML", coreml_optimize.RECIPES, export, runner="runtime_py.runners:CoreMLRunner",
                  not_on_device="CoreML .mlpackage runs on macOS/iOS only")
