"""A compressor as an object: everything export, quant, parity, the report and the runtime ask of one compressor.

Each compressor declares one `CompressorSpec` (compressors/moos_spec.py, compressors/evo_spec.py) and registers
it by name; export.build, runtime_py.parity, runtime_py.report and runtime_py.pipeline iterate over the
registry and read the spec, so none of them tests a model name. A new compressor is one spec file (plus its
parity check in runtime_py) that calls `register()`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from compkit.errors import CompkitError


class UnknownCompressor(CompkitError, ValueError):
    """A compressor name no spec registers."""


class CheckpointRefused(CompkitError, ValueError):
    """A checkpoint the spec cannot load: one line saying what is wrong with it."""


class ReferenceUnavailable(CompkitError, ValueError):
    """A manifest whose eager reference cannot be rebuilt here (its checkpoint is gone, its tokenizer folder is
    missing): one line with the fix."""


class OptionRefused(CompkitError, ValueError):
    """A build option (a bucket, a visual-token count) the compressor cannot take: one line with the fix."""


@dataclasses.dataclass
class Loaded:
    """One compressor loaded and ready to export: what load() returns."""

    module: object  # the torch module that is exported (batch 1, the spec's inputs and outputs)
    output_names: list
    info: dict  # the manifest's models[name]
    example: Callable  # bucket (None when not bucketed) -> example input tuple
    calibration: Callable  # bucket -> list of input tuples (real or realistic inputs)
    source: object = None  # the compressor object itself (MOOSCompressor, EvoCompressor)
    # write_files(loaded, out_dir, sources): files beside the artifacts (a tokenizer, the shared test vectors);
    # sources = {name: Loaded} of every compressor in the build
    write_files: Callable | None = None


@dataclasses.dataclass
class CompressorSpec:
    name: str  # artifact names, manifest models key, --NAME-checkpoint
    title: str  # for people: "MOOSComp"
    input_names: tuple  # in the exported module's argument order
    # load(checkpoint dir or None for the embedded default, options) -> Loaded; options: the build's CLI values
    # (seq_lens, visual_tokens); raises CheckpointRefused for a checkpoint it cannot take
    load: Callable
    # reference(models_info, build_dir) -> the eager fp32 reference parity compares against
    # (ReferenceUnavailable when the manifest cannot be rebuilt here)
    reference: Callable
    # "module:function" of the runtime_py parity check (named, not imported: compressors never import runtime_py)
    # check(build, artifacts, context) -> {file: record}; artifacts are one group (see bucketed)
    parity: str
    # decision thresholds per precision, on top of the numeric ones parity applies to everything
    thresholds: dict
    # the parity report's decision cell: decisions dict -> (decision text, exact-text text)
    report: Callable
    decision_label: str  # what the report's decision cell shows, for its legend
    checkpoint_help: str = ""
    bucketed: bool = False  # one artifact per sequence-length bucket, checked together as one group
    mask_inputs: tuple = ()  # inputs the quantizers keep in float (additive masks)
    smoothquant: bool = False  # takes SmoothQuant where the quant recipe offers it
    rank: int = 100  # build and listing order (the built-in ones first)
    # corpus_stats(reference, prompts) -> dict for parity.json's corpus (a "warning" key is printed instead):
    # set by compressors that are checked on the text corpus, which parity then loads
    corpus_stats: Callable | None = None

    def parity_check(self):
        import importlib

        module, _, fn = self.parity.partition(":")
        return getattr(importlib.import_module(module), fn)


_REGISTRY: dict[str, CompressorSpec] = {}


def register(spec: CompressorSpec) -> CompressorSpec:
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registry() -> dict[str, CompressorSpec]:
    """Every registered compressor, the built-in ones first (they register when their spec file is imported)."""
    from . import evo_spec, moos_spec  # noqa: F401

    return {s.name: s for s in sorted(_REGISTRY.values(), key=lambda s: (s.rank, s.name))}


def get_spec(name: str) -> CompressorSpec:
    specs = registry()
    if name not in specs:
        raise UnknownCompressor(f"unknown compressor {name!r}: choose one of {', '.join(specs)}")
    return specs[name]
