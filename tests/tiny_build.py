"""A small build folder written by the tests themselves (not by export/): tiny MOOSComp BERT and EvoComp
models exported with the real toolchains (torch.export -> XNNPACK .pte, torch.onnx, coremltools) and a
manifest.json per docs/ARTIFACTS.md, so runtime_py is tested on real artifacts of every format."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from compressors.evo import EvoCompConfig, EvoCompressor
from compressors.moos import MOOSCompressor
from compkit.files import sha256_path, size_bytes
from checkpoints import make_bert

BUCKETS = (32, 64)
# The paper's design (the default) at tiny widths: one layer of width 32, text projected 24 -> 32 (tests/test_export.py
# covers the compact design)
TINY_EVO = dict(visual_dim=32, text_dim=24, max_visual_tokens=36, max_text_tokens=8, grid=(6, 6))
MOOS_OUT = ["keep_prob", "outlier_z"]
EVO_IN, EVO_OUT = ["visual_tokens", "text_embeds", "text_mask"], ["keep_logits"]


class Perturbed(torch.nn.Module):
    """Wraps a scorer and shifts its keep probability by a deterministic per-token amount: a stand-in for an
    artifact broken by a bad quantisation recipe (its decisions change, not only its last digits)."""

    def __init__(self, inner, amount: float):
        super().__init__()
        self.inner, self.amount = inner, amount

    def forward(self, input_ids, attention_mask):
        keep, *rest = self.inner(input_ids, attention_mask)
        shift = torch.sin(input_ids.to(torch.float32) * 12.9898) * self.amount
        return (keep + shift, *rest)


def export_pte(module, example, path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(module.eval(), example)
    with open(path, "wb") as f:
        f.write(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def export_onnx(module, example, input_names, output_names, path):
    # the TorchScript exporter: ~10x faster than dynamo=True on these tiny models, and tests need speed
    torch.onnx.export(module.eval(), example, path, input_names=input_names, output_names=output_names,
                      dynamo=False, opset_version=17)


def export_mlpackage(module, example, input_names, output_names, path):
    import coremltools as ct

    ep = torch.export.export(module.eval(), example).run_decompositions({})
    inputs = [ct.TensorType(name=n, shape=tuple(x.shape), dtype=np.int32 if x.dtype == torch.int32 else np.float32)
              for n, x in zip(input_names, example)]
    ml = ct.convert(ep, inputs=inputs, outputs=[ct.TensorType(name=n) for n in output_names], convert_to="mlprogram",
                    compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16)
    ml.save(path)


def entry(build_dir, file, model, backend, quant, input_spec, output_names, bucket=None) -> dict:
    path = os.path.join(build_dir, file)
    return {"file": file, "model": model, "backend": backend, "quant": quant, "bucket": bucket,
            "input_spec": {k: [list(s), d] for k, (s, d) in input_spec.items()}, "output_names": output_names,
            "size_bytes": size_bytes(path), "sha256": sha256_path(path), "delegation": None,
            "parity": None, "latency_ms": None, "enabled": True, "disabled_reason": None}


def moos_spec(L):
    return {"input_ids": ((1, L), "int32"), "attention_mask": ((1, L), "int32")}


def moos_example(L):
    ids = torch.randint(1000, 2000, (1, L), dtype=torch.int32, generator=torch.Generator().manual_seed(L))
    mask = torch.ones(1, L, dtype=torch.int32)
    mask[:, L - L // 4 :] = 0
    return ids, mask


def make_tiny_build(build_dir: str, *, pte_buckets=(), onnx_buckets=BUCKETS, evo_formats=("onnx",),
                    evo_coreml: bool = False, perturbed_quant: str | None = None, checkpoints_dir: str | None = None) -> str:
    """Write the build folder and return it. MOOSComp gets an .pte per pte_bucket and an .onnx per onnx_bucket;
    perturbed_quant adds moos_onnx_{quant}_{L}.onnx artifacts whose keep probability is deliberately shifted."""
    os.makedirs(build_dir, exist_ok=True)
    ck = checkpoints_dir or os.path.join(build_dir, "..", "checkpoints")
    bert_dir = os.path.join(ck, "tiny-bert-base-multilingual-cased")
    if not os.path.isdir(bert_dir):
        make_bert(bert_dir, hidden=64, layers=2)
    moos = MOOSCompressor.from_pretrained(bert_dir)
    moos.tokenizer.save_pretrained(os.path.join(build_dir, "moos_tokenizer"))
    scorer = moos.torch_module.for_export()  # plain attention, as export/ lowers it (docs/ARTIFACTS.md)
    evo_dir = os.path.join(ck, "tiny-evo")
    if not os.path.isdir(evo_dir):
        evo = EvoCompressor(EvoCompConfig.for_variant("paper", **TINY_EVO), provenance="tiny test weights")
        with torch.no_grad():  # a spread head, so the tiny untrained scores are not one near-flat value
            evo.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
        evo.save(evo_dir)
    evo = EvoCompressor.load(evo_dir)

    artifacts = []
    for L in sorted(set(pte_buckets) | set(onnx_buckets)):
        ex = moos_example(L)
        if L in pte_buckets:
            f = f"moos_xnnpack_fp32_{L}.pte"
            export_pte(scorer, ex, os.path.join(build_dir, f))
            artifacts.append(entry(build_dir, f, "moos", "xnnpack", "fp32", moos_spec(L), MOOS_OUT, L))
        if L in onnx_buckets:
            f = f"moos_onnx_fp32_{L}.onnx"
            export_onnx(scorer, ex, ["input_ids", "attention_mask"], MOOS_OUT, os.path.join(build_dir, f))
            artifacts.append(entry(build_dir, f, "moos", "onnx", "fp32", moos_spec(L), MOOS_OUT, L))
        if L in onnx_buckets and perturbed_quant:
            f = f"moos_onnx_{perturbed_quant}_{L}.onnx"
            export_onnx(Perturbed(scorer, 0.3), ex, ["input_ids", "attention_mask"], MOOS_OUT, os.path.join(build_dir, f))
            artifacts.append(entry(build_dir, f, "moos", "onnx", perturbed_quant, moos_spec(L), MOOS_OUT, L))

    cfg = evo.config
    v, e, _ = evo.example_inputs(visual_tokens=cfg.max_visual_tokens, text_tokens=cfg.max_text_tokens)
    ex = (v, e, torch.ones(1, cfg.max_text_tokens, dtype=torch.int32))
    spec = {"visual_tokens": (tuple(v.shape), "float32"), "text_embeds": (tuple(e.shape), "float32"),
            "text_mask": ((1, cfg.max_text_tokens), "int32")}
    if "xnnpack" in evo_formats:
        export_pte(evo, ex, os.path.join(build_dir, "evo_xnnpack_fp32.pte"))
        artifacts.append(entry(build_dir, "evo_xnnpack_fp32.pte", "evo", "xnnpack", "fp32", spec, EVO_OUT))
    if "onnx" in evo_formats:
        export_onnx(evo, ex, EVO_IN, EVO_OUT, os.path.join(build_dir, "evo_onnx_fp32.onnx"))
        artifacts.append(entry(build_dir, "evo_onnx_fp32.onnx", "evo", "onnx", "fp32", spec, EVO_OUT))
    if evo_coreml:
        export_mlpackage(evo, ex, EVO_IN, EVO_OUT, os.path.join(build_dir, "evo_coreml_fp16.mlpackage"))
        artifacts.append(entry(build_dir, "evo_coreml_fp16.mlpackage", "evo", "coreml", "fp16", spec, EVO_OUT))

    manifest = {
        "schema": 1, "target": "desktop", "created": "2026-11-26T00:00:00Z", "compkit_revision": "test",
        "tool_versions": {"torch": torch.__version__},
        "models": {
            "moos": {"provenance": f"checkpoint {os.path.abspath(bert_dir)}", "checkpoint_sha256": None,
                     "tokenizer_dir": "moos_tokenizer", "family": moos.family, "outlier": "representation",
                     "special_tokens": "llmlingua", "buckets": sorted(set(pte_buckets) | set(onnx_buckets))},
            "evo": {"provenance": f"checkpoint {os.path.abspath(evo_dir)}", "checkpoint_sha256": None,
                    "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}},
        },
        "artifacts": artifacts,
    }
    with open(os.path.join(build_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return build_dir


def write_prompts(path: str, texts: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return path
