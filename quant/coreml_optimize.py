"""Post-conversion weight compression for CoreML ML Programs (coremltools.optimize.coreml).

- int8w: linear symmetric int8 weights, per channel (activations stay fp16).
- pal4: 4-bit palettization (a 16-entry look-up table per weight tensor), k-means clustered.
Tensors below coremltools' default size threshold (2048 elements: biases, norms) stay fp16.
"""
from __future__ import annotations

from .recipe import QuantRecipe, recipes

QUANTS = ("int8w", "pal4")


def compress(mlmodel, quant: str):
    import coremltools.optimize.coreml as cto

    if quant == "int8w":
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                                                   granularity="per_channel"))
        return cto.linear_quantize_weights(mlmodel, config)
    if quant == "pal4":
        config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=4,
                                                                             granularity="per_tensor"))
        return cto.palettize_weights(mlmodel, config)
    raise ValueError(f"CoreML weight compression must be one of {QUANTS}, not {quant!r}")


def _compress(quant):
    return lambda mlmodel: compress(mlmodel, quant)


# The CoreML ML Program backend's recipes (export/backends/coreml.py): quantize() runs on the converted model;
# options["compute_precision"] is the conversion's.
RECIPES = recipes(
    QuantRecipe("fp16", "fp16", options={"compute_precision": "fp16"}),
    QuantRecipe("fp32", "fp32", options={"compute_precision": "fp32"}),
    QuantRecipe("int8w", "int8", _compress("int8w"), options={"compute_precision": "fp16"}),
    QuantRecipe("pal4", "4bit", _compress("pal4"), options={"compute_precision": "fp16"}),
)

# The ExecuTorch CoreML delegate's recipes (export/backends/etcoreml.py): weight quantization is a setting of
# the delegate's compile spec, not a separate pass.
ETCOREML_RECIPES = recipes(
    QuantRecipe("fp16", "fp16", options={"op_linear_quantizer_config": None}),
    QuantRecipe("int8w", "int8", options={"op_linear_quantizer_config": {
        "mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}}),
)
