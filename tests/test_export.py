"""export/ and quant/: every backend and quant recipe on tiny models, run through the real runtimes
(executorch.runtime, onnxruntime; CoreML: conversion + spec validation, prediction only on macOS), the
`python -m export.build` CLI end to end, manifest schema, bad inputs."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from compressors import moos_scorer
from compressors.evo import EvoCompConfig, EvoCompressor
from compressors.moos import MOOSCompressor
from compressors.spec import get_spec
from export import build as build_cli
from export import coreml_export, executorch_coreml, executorch_xnnpack, onnx_export
from compkit.files import sha256_path
from export.targets import TARGETS, artifact_name, plan
from export.xnnpack_rewrites import DelegableLayerNorm, DelegableSelfAttention, xnnpack_form
from compressors.calibration import evo_calibration, moos_calibration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A compact-style design at tiny widths (both inputs projected); the paper's design: TINY_PAPER
TINY_EVO = dict(visual_dim=32, text_dim=24, hidden=32, layers=1, heads=2, ffn=64, input_proj=True, max_visual_tokens=36,
                max_text_tokens=8, grid=(6, 6))
TINY_PAPER = dict(visual_dim=64, text_dim=64, max_visual_tokens=36, max_text_tokens=8, grid=(6, 6))
L = 32  # the test bucket


@pytest.fixture(scope="module")
def moos(bert_dir):
    comp = MOOSCompressor.from_pretrained(bert_dir)
    comp.torch_module = comp.torch_module.for_export()  # the module the exporters take
    return comp


@pytest.fixture(scope="module")
def evo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("evo") / "tiny-evo"
    model = EvoCompressor(EvoCompConfig(**TINY_EVO))
    model.init_weights(torch.Generator().manual_seed(3))
    with torch.no_grad():  # a wider head, so keep logits spread and top-k is not decided by noise
        model.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(4))
    return str(model.save(path))


@pytest.fixture(scope="module")
def evo(evo_dir):
    return EvoCompressor.load(evo_dir)


def moos_inputs(moos):
    cal = moos_calibration(moos, L, count=4)
    return cal[0], cal


def evo_inputs(evo):
    cal = evo_calibration(evo.config, 36, count=4)
    return cal[0], cal


def eager(module, inputs):
    with torch.no_grad():
        out = module(*inputs)
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def run_pte(path, inputs):
    import executorch.kernels.quantized  # noqa: F401  (embedding_byte, for the int8 recipes)
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return [np.asarray(t) for t in method.execute(list(inputs))]


def run_onnx(path, names, inputs):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})


def kept(scores, frac=0.33):
    k = max(1, int(round(scores.size * frac)))
    return set(np.argsort(-scores.ravel(), kind="stable")[:k].tolist())


# ------------------------------------------------------------------------------------------------ registry
def test_targets_registry_is_consistent():
    from export.backends import BACKENDS

    for target, recipes in TARGETS.items():
        assert recipes, target
        for r in recipes:
            assert r.backend in BACKENDS, r
            assert r.quant in BACKENDS[r.backend].recipes, r
            assert r.buckets in ("all", "largest"), r
    union = {r for t in ("android", "ios", "desktop") for r in TARGETS[t]}
    assert set(TARGETS["all"]) == union and len(TARGETS["all"]) == len(union)
    assert {r.backend for r in TARGETS["android"]} == {"xnnpack", "onnx"}
    assert {r.backend for r in TARGETS["ios"]} == {"coreml", "etcoreml"}
    assert artifact_name("moos", "xnnpack", "int8dyn", 512) == "moos_xnnpack_int8dyn_512.pte"
    assert artifact_name("evo", "coreml", "pal4") == "evo_coreml_pal4.mlpackage"


def test_plan_buckets_and_quant_filter():
    jobs = plan("android", ("moos",), None, (128, 256, 512))
    names = [artifact_name(r.model, r.backend, r.quant, b) for r, b in jobs]
    assert "moos_xnnpack_int8dyn_128.pte" in names and "moos_xnnpack_fp32_512.pte" in names
    assert "moos_xnnpack_fp32_128.pte" not in names  # the fp32 reference only at the largest bucket
    assert not any("int8static" in n or "8da4w" in n for n in names)  # opt-in recipes
    assert "moos_onnx_int8dyn_512.onnx" not in names  # opt-in: fails the word gate on the demo head
    assert "evo_onnx_int8dyn.onnx" in [artifact_name(r.model, r.backend, r.quant, b)
                                       for r, b in plan("android", ("evo",), None, (512,))]
    assert ["moos_onnx_int8dyn_512.onnx"] == [artifact_name(r.model, r.backend, r.quant, b) for r, b in
                                             plan("android", ("moos",), ["int8dyn"], (128, 256, 512)) if r.backend == "onnx"]
    opted = plan("android", ("moos",), ["int8static"], (128, 256, 512))
    assert [artifact_name(r.model, r.backend, r.quant, b) for r, b in opted] == ["moos_xnnpack_int8static_512.pte"]
    assert len(names) == len(set(names))
    everything = [artifact_name(r.model, r.backend, r.quant, b) for r, b in plan("all", ("moos",), None, (128, 512))]
    assert len(everything) == len(set(everything)) and "moos_xnnpack_fp32_128.pte" in everything  # desktop: all buckets
    assert {r.quant for r, _ in plan("android", ("evo",), ["fp32"], (128,))} == {"fp32"}
    assert all(b is None for _, b in plan("ios", ("evo",), None, (64,)))


# ------------------------------------------------------------------------------------------------ rewrites
def test_delegable_layer_norm_matches_nn_layer_norm():
    ln = torch.nn.LayerNorm(48, eps=1e-12)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 7, 48) * 3 + 1
    torch.testing.assert_close(DelegableLayerNorm(ln)(x), ln(x), atol=1e-5, rtol=1e-5)
    wrapped = xnnpack_form(torch.nn.Sequential(torch.nn.Linear(48, 48), ln))
    assert isinstance(wrapped[1], DelegableLayerNorm) and isinstance(ln, torch.nn.LayerNorm)  # a copy


def _score_shaped_ops(graph_module, n: int) -> list[str]:
    """add / mul nodes whose output ends in [n, n]: elementwise passes over the attention scores."""
    targets = (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)
    return [str(node.target) for node in graph_module.graph.nodes
            if node.op == "call_function" and node.target in targets and isinstance(node.meta.get("val"), torch.Tensor)
            and node.meta["val"].dim() >= 2 and tuple(node.meta["val"].shape[-2:]) == (n, n)]


@pytest.mark.parametrize("smoothed", [False, True])
def test_delegable_self_attention_is_the_same_function_with_no_pass_over_the_scores(moos, bert_dir, smoothed):
    from quant import smoothquant

    module = MOOSCompressor.from_pretrained(bert_dir).torch_module.for_export()
    _, cal = moos_inputs(moos)
    ids, mask = next((i, m) for i, m in cal if int(m.sum()) < L)  # padded keys: the folded mask must hide them
    if smoothed:  # SmoothQuant runs before the rewrite in export.build: its wrappers must survive it
        module = smoothquant.smooth_linears(module, smoothquant.smoothing_factors(module, cal))
    rewritten = xnnpack_form(module)
    n_layers = module.model.config.num_hidden_layers
    assert sum(isinstance(m, DelegableSelfAttention) for m in rewritten.modules()) == n_layers
    with torch.no_grad():
        want, got = module(ids, mask), rewritten(ids, mask)
        swapped = ids.clone()  # padded positions' ids must not matter: the mask hides them
        swapped[0, int(mask.sum()):] = 7
        got_swapped = rewritten(swapped, mask)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=0)
    n = int(mask.sum())
    torch.testing.assert_close(got_swapped[0][:, :n], got[0][:, :n], atol=1e-6, rtol=0)

    before = torch.export.export(module, (ids, mask)).graph_module
    after = torch.export.export(rewritten, (ids, mask)).graph_module
    assert len(_score_shaped_ops(before, L)) == 2 * n_layers  # HF's eager attention: scale and mask
    assert _score_shaped_ops(after, L) == []


def test_delegable_self_attention_refuses_a_mask_it_cannot_fold(moos):
    attn = next(m for m in xnnpack_form(moos.torch_module).modules() if isinstance(m, DelegableSelfAttention))
    hidden = torch.randn(1, 4, attn.heads * attn.head_dim)
    with pytest.raises(ValueError, match=r"additive key mask \[B, 1, 1, L\]"):
        attn(hidden, attention_mask=torch.zeros(1, 1, 4, 4))


def test_moos_calibration_is_real_text_in_the_bucket(moos):
    cal = moos_calibration(moos, 64, count=4)
    fills = [int(m.sum()) for _, m in cal]
    assert len(set(fills)) > 1 and max(fills) == 64  # full and partly padded windows
    for ids, mask in cal:
        assert ids.dtype == torch.int32 and mask.dtype == torch.int32 and ids.shape == (1, 64)
        n = int(mask.sum())
        assert ids[0, 0] == moos.special_ids["cls"] and ids[0, n - 1] == moos.special_ids["sep"]
        assert (ids[0, n:] == moos.special_ids["pad"]).all()
        assert len(set(ids[0, 1:n - 1].tolist())) > n // 4  # varied real pieces, not padding


def test_evo_calibration_has_outlier_tokens_and_masks(evo):
    sets = evo_calibration(evo.config, 36, count=6)
    for v, t, m in sets:
        norms = v[0].norm(dim=-1)
        assert norms.max() > 4 * norms.median()  # high-norm register/sink tokens
        assert m.dtype == torch.int32 and 1 <= int(m.sum()) <= 8
        assert torch.all(t[0, int(m.sum()):] == 0)
    assert not torch.equal(sets[0][0], sets[1][0])


# ------------------------------------------------------------------------------------------------ XNNPACK
@pytest.mark.slow
@pytest.mark.parametrize("quant", ["fp32", "int8dyn", "int8static", "8da4w"])
def test_xnnpack_moos_runs_and_matches_eager(moos, tmp_path, quant):
    example, cal = moos_inputs(moos)
    module = moos.torch_module
    path = str(tmp_path / artifact_name("moos", "xnnpack", quant, L))
    info = executorch_xnnpack.export(module, example, moos_scorer.INPUT_NAMES, module.output_names, quant, path,
                                     calibration=cal, mask_inputs=get_spec("moos").mask_inputs)
    d = info["delegation"]
    assert d["delegated_nodes"] > 0 and d["partitions"] >= 1
    # LayerNorm is rewritten into delegable ops; embedding gathers legitimately stay outside
    assert not any("layer_norm" in op for op in d["non_delegated_ops"]), d["non_delegated_ops"]
    assert "aten.embedding.default" in d["non_delegated_ops"]
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # written whole, no temp path left
    for inputs in cal[:2]:
        ref, out = eager(module, inputs), run_pte(path, inputs)
        assert len(out) == len(ref) == 2
        n = int(inputs[1].sum())
        if quant == "fp32":
            np.testing.assert_allclose(out[0], ref[0], atol=1e-4)
            np.testing.assert_allclose(out[1], ref[1], atol=1e-3)
        else:
            assert np.isfinite(out[0]).all() and np.abs(out[0] - ref[0]).max() < 0.35
            overlap = len(kept(out[0][0, :n]) & kept(ref[0][0, :n])) / len(kept(ref[0][0, :n]))
            assert overlap >= (0.75 if quant != "8da4w" else 0.5), overlap
    if quant in ("int8dyn", "int8static"):
        assert info["runtime_imports"] == ["executorch.kernels.quantized"]


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["fp32", "int8static"])
def test_xnnpack_evo_single_partition_and_matches_eager(evo, tmp_path, quant):
    example, cal = evo_inputs(evo)
    path = str(tmp_path / artifact_name("evo", "xnnpack", quant))
    # the spec names text_mask a mask: quantized, its pad is rejected by XNNPACK at load (invalid_parameter)
    info = executorch_xnnpack.export(evo, example, evo.INPUT_NAMES, evo.OUTPUT_NAMES, quant, path, calibration=cal,
                                     mask_inputs=get_spec("evo").mask_inputs)
    d = info["delegation"]
    assert d["partitions"] == 1 and d["non_delegated_compute_nodes"] <= 1, d  # only the int32 mask cast
    for inputs in cal:
        ref, out = eager(evo, inputs)[0], run_pte(path, inputs)[0]
        if quant == "fp32":
            np.testing.assert_allclose(out, ref, atol=1e-4)
        else:  # static per-tensor int8 is lossy on inputs with x10 outlier tokens (measured r ~0.76 on this
            # tiny untrained model); it must still track eager. Whether it is enabled is parity's call.
            assert np.isfinite(out).all() and np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.5


# ------------------------------------------------------------------------------------------------ ONNX
@pytest.mark.slow
@pytest.mark.parametrize("quant", ["fp32", "int8dyn", "int8static"])
def test_onnx_moos_runs_in_onnxruntime(moos, tmp_path, quant):
    example, cal = moos_inputs(moos)
    module = moos.torch_module
    path = str(tmp_path / artifact_name("moos", "onnx", quant, L))
    onnx_export.export(module, example, moos_scorer.INPUT_NAMES, module.output_names, quant, path, calibration=cal)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # one self-contained file, no temp left
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == moos_scorer.INPUT_NAMES
    assert all(i.type == "tensor(int32)" and i.shape == [1, L] for i in sess.get_inputs())
    assert [o.name for o in sess.get_outputs()] == ["keep_prob", "outlier_z"]
    for inputs in cal[:2]:
        ref, out = eager(module, inputs), run_onnx(path, moos_scorer.INPUT_NAMES, inputs)
        tol = 1e-4 if quant == "fp32" else 0.35
        assert np.abs(out[0] - ref[0]).max() < tol


def test_onnx_int8dyn_keeps_input_projections_and_score_head_float(evo, tmp_path):
    from quant.onnx_quant import float_matmuls

    example, _ = evo_inputs(evo)
    path = str(tmp_path / "evo_onnx_fp32.onnx")
    onnx_export.export(evo, example, evo.INPUT_NAMES, evo.OUTPUT_NAMES, "fp32", path)
    import onnx

    graph = onnx.load(path).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    names = set(float_matmuls(path))
    kept = [n for n in graph.node if n.name in names]
    # visual_proj and text_proj (read a graph input) and the 1-output head; the encoder's MatMuls stay int8
    assert len(kept) == 3
    assert sum(1 for n in kept if min(weights[n.input[1]]) == 1) == 1
    assert any(n.op_type in ("MatMul", "Gemm") and n.input[1] in weights and n.name not in names for n in graph.node)


@pytest.mark.slow
def test_onnx_evo_int8dyn(evo, tmp_path):
    example, cal = evo_inputs(evo)
    path = str(tmp_path / "evo_onnx_int8dyn.onnx")
    onnx_export.export(evo, example, evo.INPUT_NAMES, evo.OUTPUT_NAMES, "int8dyn", path)
    for inputs in cal:
        ref, out = eager(evo, inputs)[0], run_onnx(path, evo.INPUT_NAMES, inputs)[0]
        assert out.shape == ref.shape == (1, 36)
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9  # int8 keeps the ranking (tiny untrained model)


def test_onnx_export_is_reproducible_and_names_no_machine_path(evo, tmp_path):
    example, _ = evo_inputs(evo)
    paths = [str(tmp_path / f"evo{i}.onnx") for i in range(2)]
    for p in paths:
        onnx_export.export(evo, example, evo.INPUT_NAMES, evo.OUTPUT_NAMES, "fp32", p)
    data = open(paths[0], "rb").read()
    # torch's per-node stack traces held this checkout's absolute paths: stripped, so bytes match across checkouts
    assert ROOT.encode() not in data and b"stack_trace" not in data
    assert sha256_path(paths[0]) == sha256_path(paths[1])


# ------------------------------------------------------------------------------------------------ CoreML
def _check_mlpackage(path, input_names, output_names, int_inputs):
    import coremltools as ct

    spec = ct.utils.load_spec(path)
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [i.name for i in spec.description.input] == input_names
    assert [o.name for o in spec.description.output] == output_names
    for i in spec.description.input:
        want = ct.proto.FeatureTypes_pb2.ArrayFeatureType.INT32 if i.name in int_inputs else \
            ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
        assert i.type.multiArrayType.dataType == want, i.name
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["fp16", "int8w", "pal4"])
def test_coreml_moos_converts_and_validates(moos, tmp_path, quant):
    example, _ = moos_inputs(moos)
    module = moos.torch_module
    path = str(tmp_path / artifact_name("moos", "coreml", quant, L))
    coreml_export.export(module, example, moos_scorer.INPUT_NAMES, module.output_names, quant, path)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)] and os.path.isdir(path)
    _check_mlpackage(path, moos_scorer.INPUT_NAMES, ["keep_prob", "outlier_z"], set(moos_scorer.INPUT_NAMES))
    ops = json.dumps(str(__import__("coremltools").utils.load_spec(path).mlProgram))
    if quant == "int8w":
        assert "constexpr_affine_dequantize" in ops or "constexpr_blockwise_shift_scale" in ops
    if quant == "pal4":
        assert "constexpr_lut_to_dense" in ops
    if platform.system() != "Darwin":
        pytest.skip("CoreML prediction is macOS only (coremltools: 'Model prediction is only supported on macOS'); "
                    "conversion and spec validated")
    import coremltools as ct

    out = ct.models.MLModel(path).predict({n: t.numpy() for n, t in zip(moos_scorer.INPUT_NAMES, example)})
    np.testing.assert_allclose(out["keep_prob"], eager(module, example)[0], atol=0.05)


def test_coreml_moos_at_the_full_position_length(moos, tmp_path):
    # bucket 512 = BERT's max positions: the position-id slice becomes an alias node that coremltools rejects
    # ("Unsupported fx node alias") unless export drops it; the default ios build failed on it at 512
    length = moos.torch_module.model.config.max_position_embeddings
    example = moos_scorer.example_inputs(length, vocab_size=1000)
    program = torch.export.export(moos.torch_module, tuple(example)).run_decompositions({})
    coreml_export.drop_aliases(program)
    assert not [n for n in program.graph.nodes if "alias" in str(n.target)]
    path = str(tmp_path / artifact_name("moos", "coreml", "fp16", length))
    coreml_export.export(moos.torch_module, example, moos_scorer.INPUT_NAMES, moos.torch_module.output_names, "fp16", path)
    _check_mlpackage(path, moos_scorer.INPUT_NAMES, ["keep_prob", "outlier_z"], set(moos_scorer.INPUT_NAMES))


@pytest.mark.slow
def test_coreml_evo_and_etcoreml_lower(evo, moos, tmp_path):
    example, _ = evo_inputs(evo)
    path = str(tmp_path / "evo_coreml_fp16.mlpackage")
    coreml_export.export(evo, example, evo.INPUT_NAMES, evo.OUTPUT_NAMES, "fp16", path)
    _check_mlpackage(path, evo.INPUT_NAMES, ["keep_logits"], {"text_mask"})
    pte = str(tmp_path / "moos_etcoreml_fp16_32.pte")
    example, _ = moos_inputs(moos)
    info = executorch_coreml.export(moos.torch_module, example, moos_scorer.INPUT_NAMES, moos.torch_module.output_names,
                                    "fp16", pte)
    assert info["delegation"]["partitions"] == 1 and info["delegation"]["non_delegated_compute_nodes"] == 0
    assert os.path.getsize(pte) > 100_000  # the CoreML model is embedded in the .pte


# ------------------------------------------------------------------------------------------------ CLI
def run_cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "export.build", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


MANIFEST_TYPES = {"file": str, "model": str, "backend": str, "quant": str, "input_spec": dict, "output_names": list,
                  "size_bytes": int, "sha256": str, "enabled": bool}


def check_manifest(out, target, expected_files):
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    assert m["schema"] == 1 and m["target"] == target
    assert set(m["tool_versions"]) >= {"python", "torch", "executorch", "onnxruntime", "coremltools", "transformers"}
    assert m["tool_versions"]["torch"].startswith("2.13")
    assert isinstance(m["compkit_revision"], str) and m["compkit_revision"]
    assert [a["file"] for a in m["artifacts"]] == expected_files
    for a in m["artifacts"]:
        for key, typ in MANIFEST_TYPES.items():
            assert isinstance(a[key], typ), (a["file"], key)
        for key in ("bucket", "delegation", "parity", "latency_ms", "disabled_reason"):
            assert key in a, (a["file"], key)
        assert a["sha256"] == sha256_path(os.path.join(out, a["file"]))
        for name, (shape, dtype) in a["input_spec"].items():
            assert all(isinstance(s, int) for s in shape) and dtype in ("int32", "float32")
        if a["backend"] in ("xnnpack", "etcoreml"):
            assert {"delegated_nodes", "non_delegated_nodes", "partitions", "non_delegated_ops"} <= set(a["delegation"])
    leftovers = [n for n in os.listdir(out) if n.startswith(".")]
    assert not leftovers, leftovers  # every temp path was renamed or removed
    return m


@pytest.mark.slow
def test_cli_android_end_to_end(bert_dir, evo_dir, tmp_path):
    out = str(tmp_path / "android")
    r = run_cli("--target", "android", "--moos-checkpoint", bert_dir, "--evo-checkpoint", evo_dir,
                "--quant", "fp32,int8dyn", "--seq-lens", "32", "--visual-tokens", "36", "--out", out, "--allow-disabled",
                "--jobs", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    expected = ["moos_xnnpack_int8dyn_32.pte", "moos_xnnpack_fp32_32.pte", "moos_onnx_fp32_32.onnx",
                "moos_onnx_int8dyn_32.onnx", "evo_xnnpack_int8dyn.pte", "evo_xnnpack_fp32.pte", "evo_onnx_fp32.onnx",
                "evo_onnx_int8dyn.onnx"]
    m = check_manifest(out, "android", expected)
    with open(os.path.join(out, "vectors.json"), encoding="utf-8") as f:  # shared vectors for runtime_cpp
        vectors = json.load(f)
    assert vectors["family"] == "wordpiece" and vectors["compress"] and vectors["evo"]
    assert m["models"]["moos"]["provenance"] == f"checkpoint {os.path.abspath(bert_dir)}"
    assert m["models"]["moos"]["checkpoint_sha256"] == sha256_path(bert_dir)
    assert m["models"]["moos"]["buckets"] == [32] and m["models"]["evo"]["config"]["visual_dim"] == 32
    spec = {a["file"]: a["input_spec"] for a in m["artifacts"]}
    assert spec["moos_xnnpack_fp32_32.pte"] == {"input_ids": [[1, 32], "int32"], "attention_mask": [[1, 32], "int32"]}
    assert spec["evo_onnx_fp32.onnx"]["text_mask"] == [[1, 8], "int32"]
    # MOOSComp's XNNPACK dynamic int8 artifacts were SmoothQuant-rescaled first; nothing else was
    smoothed = sorted(a["file"] for a in m["artifacts"] if a.get("smoothquant_alpha"))
    assert smoothed == ["moos_xnnpack_int8dyn_32.pte"]
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(os.path.join(out, "moos_tokenizer"))) == len(MOOSCompressor.from_pretrained(bert_dir).tokenizer)
    if os.path.isfile(os.path.join(ROOT, "runtime_py", "parity.py")):
        fp32 = [a for a in m["artifacts"] if a["quant"] == "fp32"]
        assert all(a["enabled"] and a["parity"] is not None for a in fp32), [(a["file"], a["disabled_reason"]) for a in fp32]
    assert "artifact" in r.stdout and "moos_xnnpack_fp32_32.pte" in r.stdout.split("artifact", 1)[-1]  # summary
    # a forked export worker writes the same bytes as an export in this process
    job = build_cli.load_job("evo", evo_dir, {"visual_tokens": 36})
    here = str(tmp_path / "evo_here.pte")
    executorch_xnnpack.export(job.module, tuple(job.example(None)), job.input_names, job.output_names, "fp32", here)
    assert sha256_path(here) == next(a["sha256"] for a in m["artifacts"] if a["file"] == "evo_xnnpack_fp32.pte")
    # a flipped byte no longer matches the manifest's sha256
    victim = os.path.join(out, "moos_onnx_fp32_32.onnx")
    before = sha256_path(victim)
    with open(victim, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    assert sha256_path(victim) != before


@pytest.mark.slow
def test_cli_ios_end_to_end(bert_dir, evo_dir, tmp_path):
    out = str(tmp_path / "ios")
    r = run_cli("--target", "ios", "--moos-checkpoint", bert_dir, "--evo-checkpoint", evo_dir, "--quant", "fp16,pal4",
                "--seq-lens", "16,32", "--visual-tokens", "36", "--out", out, "--allow-disabled", "--skip-parity")
    assert r.returncode == 0, r.stderr[-3000:]
    expected = ["moos_coreml_fp16_16.mlpackage", "moos_coreml_fp16_32.mlpackage", "moos_coreml_pal4_32.mlpackage",
                "moos_etcoreml_fp16_16.pte", "moos_etcoreml_fp16_32.pte", "evo_coreml_fp16.mlpackage",
                "evo_coreml_pal4.mlpackage", "evo_etcoreml_fp16.pte"]
    m = check_manifest(out, "ios", expected)
    for a in m["artifacts"]:
        if a["backend"] == "coreml":
            _check_mlpackage(os.path.join(out, a["file"]), list(a["input_spec"]), a["output_names"],
                             {n for n, (_, dt) in a["input_spec"].items() if dt == "int32"})


@pytest.fixture(scope="module")
def paper_evo_dir(tmp_path_factory):
    model = EvoCompressor(EvoCompConfig.for_variant("paper", **TINY_PAPER))
    model.init_weights(torch.Generator().manual_seed(3))
    with torch.no_grad():  # a wider head, so keep logits spread and top-k is not decided by noise
        model.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(4))
    return str(model.save(tmp_path_factory.mktemp("evo") / "tiny-paper-evo"))


@pytest.mark.slow
def test_paper_variant_android_build_passes_parity(paper_evo_dir, tmp_path):
    """The paper's design (no input projection, one layer) through every android format, parity run by the build."""
    out = str(tmp_path / "android")
    r = run_cli("--target", "android", "--model", "evo", "--evo-checkpoint", paper_evo_dir, "--quant", "fp32,int8dyn",
                "--visual-tokens", "36", "--out", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr[-3000:]  # no --allow-disabled: every artifact passed parity
    m = check_manifest(out, "android", ["evo_xnnpack_int8dyn.pte", "evo_xnnpack_fp32.pte", "evo_onnx_fp32.onnx",
                                        "evo_onnx_int8dyn.onnx"])
    assert m["models"]["evo"]["config"]["variant"] == "paper" and m["models"]["evo"]["config"]["hidden"] == 64
    for a in m["artifacts"]:
        assert a["enabled"] and a["parity"]["status"] == "pass", (a["file"], a["disabled_reason"])
    delegation = {a["file"]: a["delegation"] for a in m["artifacts"] if a["backend"] == "xnnpack"}
    assert delegation["evo_xnnpack_fp32.pte"]["partitions"] == 1, delegation
    assert delegation["evo_xnnpack_int8dyn.pte"]["partitions"] <= 2, delegation


@pytest.mark.slow
def test_paper_variant_ios_build_lowers_whole(paper_evo_dir, tmp_path):
    out = str(tmp_path / "ios")
    r = run_cli("--target", "ios", "--model", "evo", "--evo-checkpoint", paper_evo_dir, "--quant", "fp16,pal4",
                "--visual-tokens", "36", "--out", out, "--allow-disabled", "--skip-parity")
    assert r.returncode == 0, r.stderr[-3000:]
    m = check_manifest(out, "ios", ["evo_coreml_fp16.mlpackage", "evo_coreml_pal4.mlpackage", "evo_etcoreml_fp16.pte"])
    for a in m["artifacts"]:
        if a["backend"] == "coreml":
            _check_mlpackage(os.path.join(out, a["file"]), list(a["input_spec"]), a["output_names"], {"text_mask"})
        else:
            assert a["delegation"]["partitions"] == 1 and a["delegation"]["non_delegated_compute_nodes"] == 0


@pytest.mark.slow
def test_without_text_exports_with_the_same_inputs(tmp_path):
    """The "without text" ablation keeps the three inputs (it ignores two), so its artifacts plug in unchanged."""
    model = EvoCompressor(EvoCompConfig.for_variant("paper", **TINY_PAPER, use_text=False)).eval()
    example, cal = evo_inputs(model)
    pte, onnx_path = str(tmp_path / "evo_xnnpack_fp32.pte"), str(tmp_path / "evo_onnx_fp32.onnx")
    info = executorch_xnnpack.export(model, example, model.INPUT_NAMES, model.OUTPUT_NAMES, "fp32", pte)
    assert info["delegation"]["partitions"] == 1 and info["delegation"]["non_delegated_compute_nodes"] == 0
    onnx_export.export(model, example, model.INPUT_NAMES, model.OUTPUT_NAMES, "fp32", onnx_path)
    for inputs in cal[:2]:
        ref = eager(model, inputs)[0]
        np.testing.assert_allclose(run_pte(pte, inputs)[0], ref, atol=1e-4)
        np.testing.assert_allclose(run_onnx(onnx_path, model.INPUT_NAMES, inputs)[0], ref, atol=1e-4)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("args, message", [
    (["--target", "windows-phone"], "unknown target 'windows-phone'"),
    (["--seq-lens", "8,128"], "bucket 8 is smaller than 16"),
    (["--moos-checkpoint", "/nonexistent/ckpt"], "--moos-checkpoint /nonexistent/ckpt: directory not found"),
    (["--quant", "int4magic"], "--quant 'int4magic' is not built for target android"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--jobs", "0"], "--jobs must be >= 1, not 0"),
])
def test_bad_arguments_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert build_cli.main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_bad_checkpoint_contents_and_unwritable_out(tmp_path, capsys, bert_dir):
    empty = tmp_path / "empty-evo"
    empty.mkdir()
    assert build_cli.main(["--model", "evo", "--evo-checkpoint", str(empty), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--evo-checkpoint" in err and "config.json" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o1").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "sub" / "build"  # below a regular file: unwritable even for root
    assert build_cli.main(["--model", "evo", "--evo-checkpoint", str(evo_dir_for(tmp_path)), "--quant", "fp32",
                           "--visual-tokens", "36", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not writable" in err and len(err.splitlines()) == 1
    assert blocker.read_text() == "x" and not os.path.exists(str(blocker) + "/sub")
    nonempty = tmp_path / "full"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("mine")
    assert build_cli.main(["--out", str(nonempty)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert os.listdir(nonempty) == ["keep.txt"]


def evo_dir_for(tmp_path):
    model = EvoCompressor(EvoCompConfig(**TINY_EVO))
    return model.save(tmp_path / "evo-ok")


def test_cli_bad_input_exit_code_from_a_real_process(tmp_path):
    r = run_cli("--target", "android", "--seq-lens", "4", "--out", str(tmp_path / "x"), timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith("export.build: error: bucket 4 is smaller than 16")
    assert not (tmp_path / "x").exists()


def test_delegable_sums_match_torch_sum():
    from export.xnnpack_rewrites import DelegableSums

    x = torch.randn(2, 5, 7)
    cases = [lambda t: t.sum(dim=-1), lambda t: t.sum(dim=1, keepdim=True), lambda t: torch.sum(t, [2], keepdim=True),
             lambda t: t.sum(dim=2, keepdim=False),
             lambda t: (t * 2).sum(1), lambda t: t[:, :, 0].sum(dim=1, keepdim=True), lambda t: t.sum(0)]
    for f in cases:
        with DelegableSums():
            got = f(x)
        torch.testing.assert_close(got, f(x), atol=1e-5, rtol=1e-5)
