"""A quant recipe as an object: what one recipe name means on one backend.

Each backend file (export/backends/) lists the recipes it accepts; each recipe carries its own behaviour, so
export, the e2e benchmark and parity never test a recipe's name:
- `quantize`: the backend's quantization step (a module transform before torch.export for ExecuTorch
  XNNPACK, a file-to-file pass for ONNX Runtime, a model transform for CoreML; None = the float path);
- `calibrated`: it needs real calibration inputs (built from the compressor's spec);
- `smoothquant`: SmoothQuant rescales the module first, for compressors that opt in (their spec says so);
- `runtime_imports`: kernel libraries a program of this recipe needs registered where it is loaded;
- `precision`: the class parity judges it by (runtime_py.parity.thresholds: numeric ones there, decision ones in each compressor spec).
An unknown name is an error (`UnknownRecipe`), never a default.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from compkit.errors import CompkitError

PRECISIONS = ("fp32", "fp16", "int8", "4bit")


class UnknownRecipe(CompkitError, ValueError):
    """A quant recipe name a backend does not define."""


@dataclasses.dataclass(frozen=True)
class QuantRecipe:
    name: str
    precision: str
    quantize: Callable | None = None
    calibrated: bool = False
    smoothquant: bool = False
    runtime_imports: tuple[str, ...] = ()
    options: dict = dataclasses.field(default_factory=dict)  # backend-specific settings (a compile spec)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"quant recipe {self.name}: precision must be one of {PRECISIONS}, not {self.precision!r}")


def recipes(*items: QuantRecipe) -> dict[str, QuantRecipe]:
    return {r.name: r for r in items}
