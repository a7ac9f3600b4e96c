"""A backend as an object: the artifact format one runtime loads, registered by name in export/backends.py.

It carries everything the rest of compkit asks of a backend: the artifact's file extension, the exporter, the
quant recipes it accepts (quant/recipe.py), the runtime_py runner that runs its artifacts on the desktop, and
whether and how compkit runs them on a phone. Nothing else tests a backend's name.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from compkit.errors import CompkitError
from quant.recipe import QuantRecipe, UnknownRecipe


class UnknownBackend(CompkitError, ValueError):
    """A backend name export/backends.py does not register."""


@dataclasses.dataclass
class Backend:
    name: str
    extension: str  # "pte" | "onnx" | "mlpackage"
    runtime: str  # what loads it, for people: "onnxruntime"
    recipes: dict[str, QuantRecipe]
    # export(module, example_inputs, input_names, output_names, recipe, out_path, *, calibration, mask_inputs,
    #        dynamic_shapes, step) -> {"delegation", "runtime_imports", ["predict_requires"]}
    exporter: Callable
    runner: str  # "module:Class" of its runtime_py runner (named, not imported: export never imports runtime_py)
    runner_options: dict = dataclasses.field(default_factory=dict)  # keyword arguments for that runner
    # how bench_device times it: "native-runner" (compkit's ExecuTorch runner, on the phone over adb), "host" (its
    # runtime_py runner on this machine, with --device local only), None (not here: not_on_device says why)
    on_device: str | None = None
    not_on_device: str = ""  # why not, for benchmark rows

    def recipe(self, quant) -> QuantRecipe:
        """The recipe named `quant` (a QuantRecipe passes through): an unknown name is an error."""
        if isinstance(quant, QuantRecipe):
            return quant
        if quant not in self.recipes:
            raise UnknownRecipe(f"backend {self.name} has no quant recipe {quant!r}: choose one of "
                                f"{', '.join(self.recipes)}")
        return self.recipes[quant]

    def export(self, module, example_inputs, input_names, output_names, quant, out_path, **options) -> dict:
        return self.exporter(module, example_inputs, input_names, output_names, self.recipe(quant), out_path, **options)

    def runner_class(self):
        module, _, cls = self.runner.partition(":")
        return getattr(importlib.import_module(module), cls)
