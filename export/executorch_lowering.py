"""The ExecuTorch lowering every .pte backend shares: edge dialect + a partitioner, the delegation summary the
manifest records, the ExecuTorch program, and an atomic save. Backends differ only in what they pass in."""
from __future__ import annotations

from compkit.files import write_bytes

from .delegation import delegation_summary


def lower_and_save(exported, partitioner, out_path: str, step=lambda name: None, transform_passes=None,
                   quant_fusion: bool = False) -> dict:
    """Lower `exported` (a torch.export program) with `partitioner`, write the .pte, return its delegation.

    quant_fusion: fold dequantize + embedding into the quantized embedding_byte kernel (the PT2E recipes)."""
    from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower

    step("lower")
    edge = to_edge_transform_and_lower(exported, partitioner=[partitioner], transform_passes=transform_passes)
    delegation = delegation_summary(edge)
    config = ExecutorchBackendConfig(extract_delegate_segments=True, do_quant_fusion_and_const_prop=True) \
        if quant_fusion else ExecutorchBackendConfig(extract_delegate_segments=True)
    program = edge.to_executorch(config)
    step("save")
    write_bytes(out_path, program.buffer)
    return delegation
