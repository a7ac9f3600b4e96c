"""ExecuTorch .pte with the XNNPACK delegate (Android / desktop CPU), fp32 or one of quant/xnnpack_pt2e's recipes."""
from __future__ import annotations

import torch

from quant import xnnpack_pt2e

from .delegation import delegation_summary
from compkit.files import write_bytes
from .xnnpack_rewrites import DelegableLayerNorm, DelegableSums, xnnpack_form

BACKEND = "xnnpack"
QUANTS = ("fp32",) + xnnpack_pt2e.QUANTS
# Bumped whenever export changes the graph it lowers for the same module (xnnpack_rewrites); caches of .pte
# files (bench_device.e2e) key on it. 2: self-attention with the scale and mask folded in, matmul-mean LayerNorm.
GRAPH_FORM = 2


def lower(exported: torch.export.ExportedProgram):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import get_transform_passes
    from executorch.exir import to_edge_transform_and_lower

    # transform_passes: without them a no-op expand stays outside XNNPACK (docs/TOOLCHAIN.md pitfall 4)
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                       transform_passes=get_transform_passes())


def export(module, example_inputs, input_names, output_names, quant, out_path, calibration=None,
           dynamic_shapes=None, step=lambda name: None) -> dict:
    """Write out_path (.pte) and return {"delegation": ..., "runtime_imports": [...]}.

    `step(name)` is called as each stage starts (quantize / export / lower / save) so the caller can name
    the stage that failed."""
    if quant not in QUANTS:
        raise ValueError(f"XNNPACK quant must be one of {QUANTS}, not {quant!r}")
    module = xnnpack_form(module.eval())
    if quant != "fp32":
        step("quantize")
        with DelegableSums():
            module = xnnpack_pt2e.quantize(module, example_inputs, quant, calibration,
                                           float_module_types=(DelegableLayerNorm,))
    step("export")
    with torch.no_grad(), DelegableSums():
        exported = torch.export.export(module, tuple(example_inputs), dynamic_shapes=dynamic_shapes)
    step("lower")
    edge = lower(exported)
    delegation = delegation_summary(edge)
    from executorch.exir import ExecutorchBackendConfig

    # quant fusion turns the dequantize + embedding pair into the quantized embedding_byte kernel
    program = edge.to_executorch(ExecutorchBackendConfig(extract_delegate_segments=True,
                                                         do_quant_fusion_and_const_prop=True))
    step("save")
    write_bytes(out_path, program.buffer)
    uses_embedding_byte = quant in ("int8dyn", "int8static")
    return {"delegation": delegation,
            "runtime_imports": xnnpack_pt2e.RUNTIME_IMPORTS if uses_embedding_byte else []}
