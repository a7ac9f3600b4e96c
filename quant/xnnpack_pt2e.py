"""int8 recipes for ExecuTorch's XNNPACK delegate: PT2E with XNNPACKQuantizer, and 8da4w via torchao.

- int8dyn: dynamic per-token activations, per-channel symmetric int8 weights (no calibration; the most
  accurate int8 recipe on BERT-size encoders, docs/TOOLCHAIN.md).
- int8static: static per-tensor activations calibrated on real inputs, per-channel int8 weights.
- 8da4w: 8-bit dynamic activations, 4-bit grouped weights (torchao Int8DynamicActivationIntxWeightConfig),
  on every Linear whose input width divides the group size.
Both PT2E recipes also quantize embedding tables to 8 bits (EmbeddingQuantizer): XNNPACK leaves them fp32
otherwise, and they are most of a BERT's bytes (docs/TOOLCHAIN.md pitfall 5). A .pte with quantized embeddings
needs `import executorch.kernels.quantized` in the process that loads it (RUNTIME_IMPORTS).
"""
from __future__ import annotations

import torch

from .recipe import QuantRecipe, recipes

RUNTIME_IMPORTS = ["executorch.kernels.quantized"]  # the embedding_byte kernel, for int8dyn / int8static
GROUP_SIZE = 32


def _float_scalars_only_quantizer():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class FloatScalarXNNPACKQuantizer(XNNPACKQuantizer):
        """XNNPACKQuantizer whose scalar-to-tensor pass leaves integer scalars alone.

        The stock transform_for_annotation turns every add/mul scalar into a float constant, integer index
        maths included, and BERT then fails with "tensors used as indices must be long" (docs/TOOLCHAIN.md
        pitfall 3). Only float scalars take part in quantized float arithmetic, so only they are converted.
        """

        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            from torchao.quantization.pt2e.utils import get_new_attr_name_with_prefix

            for n in model.graph.nodes:
                if n.op != "call_function" or n.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor):
                    continue
                if not any(isinstance(a, float) for a in n.args):
                    continue
                new_args = []
                for a in n.args:
                    if not isinstance(a, float):
                        new_args.append(a)
                        continue
                    name = get_new_attr_name_with_prefix("_tensor_constant_")(model)
                    value = torch.tensor(a)
                    model.register_buffer(name, value)
                    with model.graph.inserting_before(n):
                        node = model.graph.create_node("get_attr", name, (), {})
                        node.meta["val"] = n.meta["val"].fake_mode.from_tensor(value, static_shapes=True)
                    new_args.append(node)
                n.args = tuple(new_args)
            model.recompile()
            return model

    return FloatScalarXNNPACKQuantizer()


def mask_free_filter(graph_module: torch.fx.GraphModule, mask_inputs):
    """A quantizer filter that keeps mask arithmetic in float.

    `mask_inputs` are the input names the compressor's spec declares as masks. An additive mask holds 0 and -1e4: int8 with one per-tensor scale (~40) for that range wipes out the
    attention scores it is added to, and XNNPACK rejects a quantized pad of it (xnn_status_invalid_parameter
    at load). Nodes computed only from the mask inputs (and constants), and the nodes that consume them
    (the score + mask add), are left unannotated; they still run, in float, inside XNNPACK.
    """
    derived = set()
    for n in graph_module.graph.nodes:
        if n.op == "placeholder":
            if n.name in mask_inputs:
                derived.add(n)
            continue
        inputs = list(n.all_input_nodes)
        if n.op == "call_function" and inputs and all(i in derived or i.op == "get_attr" for i in inputs) \
                and any(i in derived for i in inputs):
            derived.add(n)
    touching = {n for n in graph_module.graph.nodes if n in derived or any(i in derived for i in n.all_input_nodes)}
    return lambda n: n not in touching


def pt2e_quantizer(quant: str, quantize_embeddings: bool = True, float_module_types=(), filter_fn=None):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer
    from torchao.quantization.pt2e.quantizer.embedding_quantizer import EmbeddingQuantizer

    q = _float_scalars_only_quantizer()
    q.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=quant == "int8dyn"))
    if filter_fn is not None:
        q.set_filter_function(filter_fn)
    for module_type in float_module_types:  # e.g. normalisation statistics, which int8 would ruin
        q.set_module_type(module_type, None)
    return ComposableQuantizer([EmbeddingQuantizer(), q]) if quantize_embeddings else q


def quantize_pt2e(module: torch.nn.Module, example_inputs: tuple, quant: str, calibration=None,
                  quantize_embeddings: bool = True, float_module_types=(), mask_inputs=()) -> torch.fx.GraphModule:
    """A converted (quantize/dequantize-annotated) graph module, ready for torch.export and XNNPACK lowering."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if quant not in ("int8dyn", "int8static"):
        raise ValueError(f"PT2E quant must be int8dyn or int8static, not {quant!r}")
    if quant == "int8static" and not calibration:
        raise ValueError("int8static needs calibration inputs (compressors/calibration.py)")
    graph = torch.export.export(module, example_inputs).module()
    prepared = prepare_pt2e(graph, pt2e_quantizer(quant, quantize_embeddings, float_module_types,
                                                 mask_free_filter(graph, mask_inputs)))
    with torch.no_grad():
        for inputs in calibration or [example_inputs]:  # dynamic: one pass just settles the observers
            prepared(*inputs)
    return convert_pt2e(prepared)


def quantize_8da4w(module: torch.nn.Module, group_size: int = GROUP_SIZE) -> torch.nn.Module:
    """A deep copy of `module` with torchao 8da4w Linear layers (input width divisible by group_size)."""
    import copy

    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    module = copy.deepcopy(module)
    quantize_(module, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size)),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and m.in_features % group_size == 0)
    return module


def _pt2e(quant):
    def quantize(module, example_inputs, calibration=None, float_module_types=(), mask_inputs=()):
        return quantize_pt2e(module, example_inputs, quant, calibration, float_module_types=float_module_types,
                             mask_inputs=mask_inputs)
    return quantize


def _8da4w(module, example_inputs, calibration=None, float_module_types=(), mask_inputs=()):
    return quantize_8da4w(module)


# The XNNPACK backend's recipes (export/backends/xnnpack.py). Both PT2E recipes quantize the embedding tables,
# whose embedding_byte kernel a loader registers with RUNTIME_IMPORTS; SmoothQuant measurably helps the
# per-token dynamic one only (quant/smoothquant.py).
RECIPES = recipes(
    QuantRecipe("fp32", "fp32"),
    QuantRecipe("int8dyn", "int8", _pt2e("int8dyn"), smoothquant=True, runtime_imports=tuple(RUNTIME_IMPORTS)),
    QuantRecipe("int8static", "int8", _pt2e("int8static"), calibrated=True, runtime_imports=tuple(RUNTIME_IMPORTS)),
    QuantRecipe("8da4w", "4bit", _8da4w),
)
