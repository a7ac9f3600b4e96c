"""int8 recipes for ONNX Runtime (desktop and ONNX Runtime Mobile): onnxruntime.quantization.

- int8dyn: quantize_dynamic, int8 weights per channel, activations quantized per call (no calibration).
- int8static: quantize_static (QDQ format) with a calibration reader over real inputs.
Both run onnxruntime's quant_pre_process first with skip_symbolic_shape=True: its symbolic shape inference
fails on dynamo-exported BERT, and it leaves temp files in the working directory, so it runs inside a temp
directory (docs/TOOLCHAIN.md pitfall 7).
int8dyn leaves two kinds of weight MatMul in float (float_matmuls, measured in docs/EXPORT.md): ORT's dynamic
quantization scales a whole activation tensor at once, so a MatMul reading a model input with outlier rows
(EvoComp's visual tokens) loses every ordinary row, and the score heads' output is the decision itself.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from .recipe import QuantRecipe, recipes

QUANTS = ("int8dyn", "int8static")


@contextlib.contextmanager
def _in_dir(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class _Reader:
    """onnxruntime CalibrationDataReader over a list of {input name: np.ndarray}."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


SCORE_HEAD_MAX_OUTPUTS = 2
_PASS_THROUGH = ("Reshape", "Flatten", "Cast", "Identity", "Unsqueeze", "Squeeze")


def float_matmuls(model_path: str, max_outputs: int = SCORE_HEAD_MAX_OUTPUTS) -> list[str]:
    """Names of the weight MatMul/Gemm nodes int8dyn keeps float: score heads (at most `max_outputs` output
    columns) and projections of a float graph input (through reshapes only)."""
    import onnx

    graph = onnx.load(model_path, load_external_data=False).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    float_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    producer = {o: n for n in graph.node for o in n.output}

    def reads_input(name: str) -> bool:
        while name in producer and producer[name].op_type in _PASS_THROUGH:
            name = producer[name].input[0]
        return name in float_inputs

    names = []
    for n in graph.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in weights:
            continue
        w = weights[n.input[1]]
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        outputs = w[0] if trans_b else w[-1]
        if outputs <= max_outputs or reads_input(n.input[0]):
            names.append(n.name)
    # quantize_dynamic splits a Gemm into "<name>_MatMul" + Add before it quantizes: exclude both spellings
    return names + [f"{name}_MatMul" for name in names]


def quantize(model_in: str, model_out: str, quant: str, calibration=None, input_names=None) -> None:
    """Write the int8 version of the ONNX file model_in to model_out (both absolute paths)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant not in QUANTS:
        raise ValueError(f"ONNX quant must be one of {QUANTS}, not {quant!r}")
    if quant == "int8static" and not calibration:
        raise ValueError("int8static needs calibration inputs (compressors/calibration.py)")
    model_in, model_out = os.path.abspath(model_in), os.path.abspath(model_out)
    with tempfile.TemporaryDirectory(prefix="onnxq-") as tmp, _in_dir(tmp):
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(model_in, pre, skip_symbolic_shape=True)
        if quant == "int8dyn":
            quantize_dynamic(pre, model_out, weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_exclude=float_matmuls(pre))
            return
        feeds = [{name: np.asarray(t) for name, t in zip(input_names, inputs)} for inputs in calibration]
        reader = _Reader(feeds)
        CalibrationDataReader.register(_Reader)
        quantize_static(pre, model_out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def _ort(quant):
    def run(model_in, model_out, calibration=None, input_names=None):
        quantize(model_in, model_out, quant, calibration, input_names)
    return run


# The ONNX backend's recipes (export/backends/onnx.py): quantize() runs on the exported fp32 file. SmoothQuant
# is not applied: ONNX Runtime's per-tensor int8dyn lost with it (docs/EXPORT.md).
RECIPES = recipes(
    QuantRecipe("fp32", "fp32"),
    QuantRecipe("int8dyn", "int8", _ort("int8dyn")),
    QuantRecipe("int8static", "int8", _ort("int8static"), calibrated=True),
)
