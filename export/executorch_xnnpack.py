"""ExecuTorch .pte with the XNNPACK delegate (Android / desktop CPU), fp32 or one of quant/xnnpack_pt2e's recipes."""
from __future__ import annotations

import torch

from quant import xnnpack_pt2e

from .backend import Backend
from .executorch_lowering import lower_and_save
from .xnnpack_rewrites import DelegableLayerNorm, DelegableSums, xnnpack_form

# Bumped whenever export changes the graph it lowers for the same module (xnnpack_rewrites); caches of .pte
# files (bench_device.e2e) key on it. 2: self-attention with the scale and mask folded in, matmul-mean LayerNorm.
GRAPH_FORM = 2


def export(module, example_inputs, input_names, output_names, recipe, out_path, calibration=None,
           mask_inputs=(), dynamic_shapes=None, step=lambda name: None) -> dict:
    """Write out_path (.pte) and return {"delegation": ..., "runtime_imports": [...]}.

    `step(name)` is called as each stage starts (quantize / export / lower / save) so the caller can name
    the stage that failed. `mask_inputs`: inputs the quantizer keeps in float (the compressor's spec)."""
    recipe = BACKEND.recipe(recipe)
    module = xnnpack_form(module.eval())
    if recipe.quantize is not None:
        step("quantize")
        with DelegableSums():
            module = recipe.quantize(module, tuple(example_inputs), calibration,
                                     float_module_types=(DelegableLayerNorm,), mask_inputs=tuple(mask_inputs))
    step("export")
    with torch.no_grad(), DelegableSums():
        exported = torch.export.export(module, tuple(example_inputs), dynamic_shapes=dynamic_shapes)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import get_transform_passes

    # transform_passes: without them a no-op expand stays outside XNNPACK (docs/TOOLCHAIN.md pitfall 4);
    # quant fusion turns the dequantize + embedding pair into the quantized embedding_byte kernel
    delegation = lower_and_save(exported, XnnpackPartitioner(), out_path, step, transform_passes=get_transform_passes(),
                                quant_fusion=True)
    return {"delegation": delegation, "runtime_imports": list(recipe.runtime_imports)}


BACKEND = Backend("xnnpack", "pte", "ExecuTorch (XNNPACK)", xnnpack_pt2e.RECIPES, export, runner="runtime_py.runners:ExecuTorchRunner",
                  on_device="native-runner")
