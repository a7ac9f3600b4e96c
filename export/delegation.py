"""What an ExecuTorch delegate took and what it left outside, from executorch.devtools' delegation info."""
from __future__ import annotations

import re

# getitem nodes only unpack a delegate's output tuple: they are bookkeeping, not kernels the runtime runs.
BOOKKEEPING = ("getitem",)


def _op_name(op_type: str) -> str:
    """'aten_native_layer_norm_default' -> 'aten.native_layer_norm.default' (best effort, for reading)."""
    m = re.match(r"^(aten|dim_order_ops|quantized_decomposed|torchao)_(.+?)(?:_(default|Tensor|Scalar|int|dim_IntList|tensor))?$", op_type)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3) or 'default'}" if m else op_type


def delegation_summary(edge_program) -> dict:
    """The manifest's delegation field for a lowered EdgeProgramManager."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    outside = {_op_name(k): v.non_delegated for k, v in sorted(info.delegation_by_operator.items())
               if v.non_delegated and k not in BOOKKEEPING}
    return {
        "delegated_nodes": info.num_delegated_nodes,
        "non_delegated_nodes": info.num_non_delegated_nodes,
        "non_delegated_compute_nodes": sum(outside.values()),
        "partitions": info.num_delegated_subgraphs,
        "non_delegated_ops": outside,
    }
