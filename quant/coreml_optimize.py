"""Post-conversion weight compression for CoreML ML Programs (coremltools.optimize.coreml).

- int8w: linear symmetric int8 weights, per channel (activations stay fp16).
- pal4: 4-bit palettization (a 16-entry look-up table per weight tensor), k-means clustered.
Tensors below coremltools' default size threshold (2048 elements: biases, norms) stay fp16.
"""
from __future__ import annotations

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
