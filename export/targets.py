"""The build targets: target name -> the recipes it builds. A new target (or recipe) is one entry here.

A recipe is (model, backend, quant, buckets): `buckets="all"` builds one artifact per --seq-lens bucket
(MOOSComp; EvoComp has no buckets), "largest" only at the largest bucket. Slow-to-build, accuracy-risky
recipes (static int8 needs calibration passes, 8da4w) are built at the largest bucket only, which keeps
`--target android` / `--target ios` under 5 minutes on 2 cores (docs/EXPORT.md has the timings).
"""
from __future__ import annotations

from typing import NamedTuple


class Recipe(NamedTuple):
    model: str  # "moos" | "evo"
    backend: str  # "xnnpack" | "etcoreml" | "onnx" | "coreml"  (docs/ARTIFACTS.md)
    quant: str  # "fp32" | "fp16" | "int8dyn" | "int8static" | "8da4w" | "int8w" | "pal4"
    buckets: str = "all"  # "all" | "largest"


MODELS = ("moos", "evo")
EXTENSIONS = {"xnnpack": "pte", "etcoreml": "pte", "onnx": "onnx", "coreml": "mlpackage"}


def _both(backend: str, quant: str, buckets: str = "all") -> list[Recipe]:
    return [Recipe(m, backend, quant, buckets) for m in MODELS]


TARGETS: dict[str, list[Recipe]] = {
    # Android: ExecuTorch + XNNPACK, and ONNX Runtime Mobile
    "android": (_both("xnnpack", "fp32") + _both("xnnpack", "int8dyn") + _both("xnnpack", "int8static", "largest")
                + _both("xnnpack", "8da4w", "largest") + _both("onnx", "fp32") + _both("onnx", "int8dyn")),
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
    jobs = []
    for model in models:
        for r in TARGETS[target]:
            if r.model != model or (quants and r.quant not in quants):
                continue
            if model != "moos":
                jobs.append((r, None))
                continue
            for bucket in (sorted(seq_lens) if r.buckets == "all" else [max(seq_lens)]):
                jobs.append((r, bucket))
    return jobs
