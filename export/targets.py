"""The build targets: target name -> the (compressor, backend, quant recipe) triples it builds.

A new target is one entry here; a recipe a target builds must exist in its backend's file (export/backends.py)
and the compressor in compressors/spec.py's registry. A Recipe is (model, backend, quant, buckets):
`buckets="all"` builds one artifact per --seq-lens bucket (bucketed compressors: MOOSComp; the others have no
buckets), "largest" only at the largest bucket. Slow-to-build, accuracy-risky
recipes (static int8 needs calibration passes, 8da4w) are built at the largest bucket only and only when
--quant names them, which keeps `--target android` / `--target ios` under 5 minutes on 2 cores
(docs/EXPORT.md has the timings).
"""
from __future__ import annotations

from typing import NamedTuple


class Recipe(NamedTuple):
    model: str  # "moos" | "evo"
    backend: str  # "xnnpack" | "etcoreml" | "onnx" | "coreml"  (docs/ARTIFACTS.md)
    quant: str  # "fp32" | "fp16" | "int8dyn" | "int8static" | "8da4w" | "int8w" | "pal4"
    buckets: str = "all"  # "all" | "largest"
    default: bool = True  # False: built only when --quant names it (opt-in, keeps default builds short)


MODELS = ("moos", "evo")  # the built-in compressors every target builds
DEFAULT_SEQ_LENS = (128, 256, 512)


def _both(backend: str, quant: str, buckets: str = "all", default: bool = True) -> list[Recipe]:
    return [Recipe(m, backend, quant, buckets, default) for m in MODELS]


TARGETS: dict[str, list[Recipe]] = {
    # Android: ExecuTorch + XNNPACK, and ONNX Runtime Mobile
    # The deployable int8dyn .pte at every bucket; fp32 and ONNX references at the largest bucket; static int8
    # and 8da4w are opt-in (--quant int8static,8da4w): they alone took ~4 CPU-minutes and keep fewer decisions.
    # MOOSComp's ONNX int8dyn is opt-in too: on the demo head it keeps 94.5% of words (< the 98% gate) and is
    # slower than the XNNPACK int8dyn .pte (docs/EXPORT.md), so the default build holds only passing artifacts.
    "android": (_both("xnnpack", "int8dyn") + _both("xnnpack", "fp32", "largest")
                + _both("xnnpack", "int8static", "largest", default=False)
                + _both("xnnpack", "8da4w", "largest", default=False)
                + _both("onnx", "fp32", "largest") + [Recipe("moos", "onnx", "int8dyn", "largest", default=False),
                                                      Recipe("evo", "onnx", "int8dyn", "largest")]),
    # iOS: CoreML ML Programs, and ExecuTorch with the CoreML delegate
    "ios": (_both("coreml", "fp16") + _both("coreml", "int8w") + _both("coreml", "pal4", "largest")
            + _both("etcoreml", "fp16")),
    # Desktop CPU: ONNX Runtime and ExecuTorch + XNNPACK
    "desktop": (_both("onnx", "fp32") + _both("onnx", "int8dyn") + _both("xnnpack", "fp32")
                + _both("xnnpack", "int8dyn")),
}
TARGETS["all"] = list(dict.fromkeys(r for name in ("android", "ios", "desktop") for r in TARGETS[name]))


def artifact_name(model: str, backend: str, quant: str, bucket: int | None = None) -> str:
    """{model}_{backend}_{quant}[_{bucket}].{pte,onnx,mlpackage}"""
    suffix = f"_{bucket}" if bucket is not None else ""
    from .backends import get_backend

    return f"{model}_{backend}_{quant}{suffix}.{get_backend(backend).extension}"


def plan(target: str, models=MODELS, quants=None, seq_lens=DEFAULT_SEQ_LENS) -> list[tuple[Recipe, int | None]]:
    """(recipe, bucket) for every artifact a build writes, in build order (models, then recipes, then buckets)."""
    from compressors.spec import get_spec

    jobs, seen = [], set()
    for model in models:
        bucketed = get_spec(model).bucketed
        for r in TARGETS[target]:
            wanted = r.quant in quants if quants else r.default
            if r.model != model or not wanted:
                continue
            for bucket in ([None] if not bucketed else sorted(seq_lens) if r.buckets == "all" else [max(seq_lens)]):
                name = artifact_name(model, r.backend, r.quant, bucket)
                if name not in seen:  # "all" may list one recipe with different bucket rules
                    seen.add(name)
                    jobs.append((r, bucket))
    return jobs
