"""The build targets: target name -> the recipes it builds. A new target (or recipe) is one entry here.

A recipe is (model, backend, quant, buckets): `buckets="all"` builds one artifact per --seq-lens bucket
(MOOSComp; EvoComp has no buckets), "largest" only at the largest bucket. Slow-to-build, accuracy-risky
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


MODELS = ("moos", "evo")
EXTENSIONS = {"xnnpack": "pte", "etcoreml": "pte", "onnx": "onnx", "coreml": "mlpackage"}


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
    return f"{model}_{backend}_{quant}{suffix}.{EXTENSIONS[backend]}"


def plan(target: str, models=MODELS, quants=None, seq_lens=(128, 256, 512)) -> list[tuple[Recipe, int | None]]:
    """(recipe, bucket) for every artifact a build writes, in build order (models, then recipes, then buckets)."""
    jobs, seen = [], set()
    for model in models:
        for r in TARGETS[target]:
            wanted = r.quant in quants if quants else r.default
            if r.model != model or not wanted:
                continue
            for bucket in ([None] if model != "moos" else sorted(seq_lens) if r.buckets == "all" else [max(seq_lens)]):
                name = artifact_name(model, r.backend, r.quant, bucket)
                if name not in seen:  # "all" may list one recipe with different bucket rules
                    seen.add(name)
                    jobs.append((r, bucket))
    return jobs
