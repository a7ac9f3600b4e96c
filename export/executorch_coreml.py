"""ExecuTorch .pte with the CoreML delegate (iOS / macOS). Lowering runs on Linux; running it needs Apple's
CoreML runtime (the Linux executorch wheel does not register the CoreML backend, docs/TOOLCHAIN.md).

Quants: fp16 (CoreML compute precision) and int8w (int8 linear weights, via the delegate's compile spec).
"""
from __future__ import annotations

import torch

from .delegation import delegation_summary
from compkit.files import write_bytes

BACKEND = "etcoreml"
QUANTS = ("fp16", "int8w")


def export(module, example_inputs, input_names, output_names, quant, out_path, calibration=None,
           step=lambda name: None) -> dict:
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    if quant not in QUANTS:
        raise ValueError(f"ExecuTorch CoreML quant must be one of {QUANTS}, not {quant!r}")
    quantizer_config = None
    if quant == "int8w":
        quantizer_config = {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS17,
        # MODEL, not COMPILED_MODEL: compiling an .mlmodelc needs macOS (docs/TOOLCHAIN.md)
        model_type=CoreMLBackend.MODEL_TYPE.MODEL, op_linear_quantizer_config=quantizer_config)
    step("export")
    with torch.no_grad():
        exported = torch.export.export(module.eval(), tuple(example_inputs))
    step("lower")
    edge = to_edge_transform_and_lower(exported, partitioner=[CoreMLPartitioner(compile_specs=specs)])
    delegation = delegation_summary(edge)
    program = edge.to_executorch(ExecutorchBackendConfig(extract_delegate_segments=True))
    step("save")
    write_bytes(out_path, program.buffer)
    return {"delegation": delegation, "runtime_imports": [], "predict_requires": "macOS/iOS (CoreML backend)"}
