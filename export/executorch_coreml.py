"""ExecuTorch .pte with the CoreML delegate (iOS / macOS). Lowering runs on Linux; running it needs Apple's
CoreML runtime (the Linux executorch wheel does not register the CoreML backend, docs/TOOLCHAIN.md).

Recipes (quant/coreml_optimize.ETCOREML_RECIPES): fp16 (CoreML compute precision) and int8w (int8 linear
weights, via the delegate's compile spec).
"""
from __future__ import annotations

import torch

from quant.coreml_optimize import ETCOREML_RECIPES

from .backend import Backend
from .executorch_lowering import lower_and_save


def export(module, example_inputs, input_names, output_names, recipe, out_path, calibration=None,
           mask_inputs=(), dynamic_shapes=None, step=lambda name: None) -> dict:
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    recipe = BACKEND.recipe(recipe)
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS17,
        # MODEL, not COMPILED_MODEL: compiling an .mlmodelc needs macOS (docs/TOOLCHAIN.md)
        model_type=CoreMLBackend.MODEL_TYPE.MODEL, op_linear_quantizer_config=recipe.options["op_linear_quantizer_config"])
    step("export")
    with torch.no_grad():
        exported = torch.export.export(module.eval(), tuple(example_inputs))
    delegation = lower_and_save(exported, CoreMLPartitioner(compile_specs=specs), out_path, step)
    return {"delegation": delegation, "runtime_imports": [], "predict_requires": "macOS/iOS (CoreML backend)"}


BACKEND = Backend("etcoreml", "pte", "ExecuTorch (CoreML delegate)", ETCOREML_RECIPES, export, runner="runtime_py.runners:ExecuTorchRunner",
                  runner_options={"delegate": "CoreMLBackend"}, not_on_device="CoreML-delegated .pte needs the CoreML backend (iOS/macOS ExecuTorch build)")
