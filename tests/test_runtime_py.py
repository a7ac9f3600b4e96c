"""runtime_py runners and pipeline on real artifacts (ExecuTorch XNNPACK .pte, ONNX, CoreML .mlpackage) of tiny
models, exported here; the eager PyTorch models are the reference."""
import json
import os
import sys

import numpy as np
import pytest
import torch

import tiny_build
from compressors import corpus as shipped_corpus
from runtime_py.manifest import ManifestError
from runtime_py.pipeline import MoosArtifactScorer, evo_compress, load_build
from runtime_py.runners import (CoreMLRunner, EagerRunner, ExecuTorchRunner, InputError, OnnxRunner, RunnerUnavailable,
                                load_runner, normalize_spec)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt")
    path = tiny_build.make_tiny_build(str(root / "build"), pte_buckets=(32,), onnx_buckets=(32, 64),
                                      evo_formats=("xnnpack", "onnx"), evo_coreml=True)
    return load_build(path)


def entry(build, file):
    return next(a for a in build.artifacts() if a["file"] == file)


def eager_runner(build, a):
    module = build.moos.torch_module if a["model"] == "moos" else build.evo
    return EagerRunner(module, a["input_spec"], a["output_names"])


@pytest.mark.parametrize("file", ["moos_xnnpack_fp32_32.pte", "moos_onnx_fp32_64.onnx", "evo_xnnpack_fp32.pte", "evo_onnx_fp32.onnx"])
def test_runner_matches_eager(build, file):
    a = entry(build, file)
    runner = load_runner(build.dir, a)
    assert runner.input_spec == normalize_spec(a["input_spec"])
    assert runner.output_names == a["output_names"]
    inputs = runner.example_inputs(seed=3)
    if a["model"] == "moos":
        inputs["input_ids"] %= len(build.moos.tokenizer)
        inputs["attention_mask"][:, -5:] = 0
    got, ref = runner.run(inputs), eager_runner(build, a).run(inputs)
    assert list(got) == a["output_names"]
    for name in a["output_names"]:
        assert got[name].shape == ref[name].shape and got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


@pytest.mark.parametrize("file", ["moos_xnnpack_fp32_32.pte", "moos_onnx_fp32_32.onnx"])
def test_runner_rejects_inputs_off_spec(build, file):
    runner = load_runner(build.dir, entry(build, file))
    good = runner.example_inputs()
    cases = {
        "int64": ({**good, "input_ids": good["input_ids"].astype(np.int64)}, "input 'input_ids' is int64, the artifact takes int32"),
        "shape": ({**good, "attention_mask": np.ones((1, 16), np.int32)}, "has shape (1, 16), the artifact takes (1, 32)"),
        "missing": ({"input_ids": good["input_ids"]}, "missing ['attention_mask']"),
        "extra": ({**good, "token_type_ids": good["input_ids"]}, "unexpected ['token_type_ids']"),
        "list": ({**good, "input_ids": good["input_ids"].tolist()}, "is a list; pass a numpy array"),
    }
    for bad, message in cases.values():
        with pytest.raises(InputError) as e:
            runner.run(bad)
        assert message in str(e.value) and file in str(e.value) and "\n" not in str(e.value)


def test_runners_read_their_own_spec(build):
    """Without a manifest, each runner reads the spec from the artifact; a manifest that disagrees is refused."""
    a = entry(build, "moos_xnnpack_fp32_32.pte")
    pte = ExecuTorchRunner(os.path.join(build.dir, a["file"]))
    assert list(pte.input_spec.values()) == list(normalize_spec(a["input_spec"]).values())
    assert len(pte.output_names) == 2
    onnx = OnnxRunner(os.path.join(build.dir, "moos_onnx_fp32_64.onnx"), threads=1)
    assert onnx.input_spec == normalize_spec(entry(build, "moos_onnx_fp32_64.onnx")["input_spec"])
    assert onnx.output_names == ["keep_prob", "outlier_z"]
    wrong = {"input_ids": [[1, 64], "int32"], "attention_mask": [[1, 64], "int32"]}
    with pytest.raises(ValueError, match="the program takes \\[1, 32\\] int32"):
        ExecuTorchRunner(os.path.join(build.dir, a["file"]), input_spec=wrong)
    with pytest.raises(ValueError, match="the model gives"):
        OnnxRunner(os.path.join(build.dir, "moos_onnx_fp32_64.onnx"), output_names=["logits"])
    with pytest.raises(FileNotFoundError, match="no such .pte"):
        ExecuTorchRunner(os.path.join(build.dir, "nothing.pte"))
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        load_runner(build.dir, {**a, "backend": "tflite"})
    with pytest.raises(RuntimeError, match="needs `import compkit_no_such_kernels`"):
        load_runner(build.dir, {**a, "runtime_imports": ["compkit_no_such_kernels"]})
    with_kernels = load_runner(build.dir, {**a, "runtime_imports": ["executorch.kernels.quantized"]})
    assert list(with_kernels.run(with_kernels.example_inputs())) == ["keep_prob", "outlier_z"]


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the off-macOS behaviour")
def test_coreml_converts_and_skips_prediction_off_macos(build):
    import coremltools as ct

    a = entry(build, "evo_coreml_fp16.mlpackage")
    path = os.path.join(build.dir, a["file"])
    spec = ct.models.MLModel(path, skip_model_load=True).get_spec()  # conversion and spec are checkable here
    assert [i.name for i in spec.description.input] == list(a["input_spec"])
    assert [o.name for o in spec.description.output] == a["output_names"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == a["input_spec"]["visual_tokens"][0]
    with pytest.raises(RunnerUnavailable, match="CoreML prediction needs macOS"):
        load_runner(build.dir, a)
    with pytest.raises(RunnerUnavailable, match="CoreML prediction needs macOS"):
        CoreMLRunner(path)


def test_coreml_delegated_pte_is_unavailable_here():
    from executorch.runtime import Runtime

    if Runtime.get().backend_registry.is_available("CoreMLBackend"):
        pytest.skip("this executorch runtime has the CoreML backend")
    with pytest.raises(RunnerUnavailable, match="needs macOS"):
        ExecuTorchRunner("moos_etcoreml_fp16_512.pte", delegate="CoreMLBackend")


PROMPT_KINDS = ("meeting", "code", "table-like", "multilingual", "math")


@pytest.fixture(scope="module")
def prompts():
    rows = shipped_corpus.prompts()
    picked = {}
    for r in rows:  # one long and one short prompt of several kinds
        picked.setdefault((r["kind"], len(r["text"]) > 2000), r["text"])
    return [t for (kind, _), t in picked.items() if kind in PROMPT_KINDS]


@pytest.mark.parametrize("backend,weight", [("onnx", 0.0), ("onnx", 0.3), ("xnnpack", 0.0)])
def test_compress_prompt_through_artifacts_gives_eager_words(build, prompts, backend, weight):
    arts = [a for a in build.artifacts("moos") if a["backend"] == backend and a["quant"] == "fp32"]
    reference = build.moos.with_scorer(build.moos.scorer)  # plain eager: batched, unpadded
    through = build.moos_compressor(arts)
    assert through.scorer.seq_lens == tuple(sorted(a["bucket"] for a in arts))
    for c in (reference, through):
        c.outlier_weight, c.max_seq_len = weight, max(through.scorer.seq_lens)
    assert any(len(build.moos.tokenizer.tokenize(p)) > 2 * c.max_seq_len for p in prompts)  # several windows
    for p in prompts:
        for rate in (0.33, 0.5):
            ref = reference.compress_prompt(p, rate=rate, return_word_label=True)
            got = through.compress_prompt(p, rate=rate, return_word_label=True)
            assert got["fn_labeled_original_prompt"] == ref["fn_labeled_original_prompt"]
            assert got["compressed_prompt"] == ref["compressed_prompt"]
            assert got["compressed_tokens"] < got["origin_tokens"]


def test_artifact_scorer_uses_the_smallest_bucket_that_fits(build):
    runners = {a["bucket"]: load_runner(build.dir, a) for a in build.artifacts("moos") if a["backend"] == "onnx"}
    seen = []

    class Recording:  # the real runner, with the lengths it was asked for noted
        def __init__(self, inner):
            self.inner, self.output_names = inner, inner.output_names

        def run(self, inputs):
            seen.append(inputs["input_ids"].shape)
            return self.inner.run(inputs)

    compressor = build.moos.with_scorer(MoosArtifactScorer({b: Recording(r) for b, r in runners.items()}))
    compressor.max_seq_len = 64
    compressor.compress_prompt("Short note: the build passed.", rate=0.5)
    assert seen == [(1, 32)]
    seen.clear()
    compressor.compress_prompt(" ".join(["The quarterly report is late again"] * 12), rate=0.5)
    assert seen and all(s == (1, 64) for s in seen)
    small = build.moos.with_scorer(MoosArtifactScorer({32: runners[32]}))
    small.max_seq_len = 64
    with pytest.raises(ValueError, match="fits no bucket"):
        small.compress_prompt(" ".join(["The quarterly report is late again"] * 12), rate=0.5)


@pytest.mark.parametrize("file", ["evo_xnnpack_fp32.pte", "evo_onnx_fp32.onnx"])
def test_evo_compress_through_artifact_matches_eager(build, file):
    runner = load_runner(build.dir, entry(build, file))
    cfg = build.evo.config
    g = torch.Generator().manual_seed(7)
    for t in (cfg.max_text_tokens, 3):  # a full question, and a short one the pipeline pads and masks
        v, e = torch.randn(cfg.max_visual_tokens, cfg.visual_dim, generator=g), torch.randn(t, cfg.text_dim, generator=g)
        for ratio in (2.0, 3.0, 4.0):
            kept, idx = evo_compress(runner, v.numpy(), e.numpy(), ratio=ratio)
            pad = torch.cat([e, torch.zeros(cfg.max_text_tokens - t, cfg.text_dim)])
            mask = (torch.arange(cfg.max_text_tokens) < t).to(torch.float32)
            ref_kept, ref_idx = build.evo.compress(v, pad, ratio=ratio, text_mask=mask)
            np.testing.assert_array_equal(idx, ref_idx.numpy())
            np.testing.assert_array_equal(kept, ref_kept.numpy())
            assert len(idx) == round(cfg.max_visual_tokens / ratio) and np.all(np.diff(idx) > 0)
    _, idx = evo_compress(runner, v.numpy()[None], e.numpy()[None], ratio=None, k=5)
    assert idx.shape == (1, 5)
    with pytest.raises(ValueError, match="exceed the artifact's 8"):
        evo_compress(runner, v.numpy(), np.zeros((9, cfg.text_dim), np.float32))
    with pytest.raises(InputError, match="visual_tokens"):
        evo_compress(runner, v.numpy()[:10], e.numpy())


def test_load_build_errors_are_one_line(tmp_path, build):
    with pytest.raises(ManifestError, match="build folder not found"):
        load_build(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_build(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable"):
        load_build(tmp_path)
    manifest = json.load(open(os.path.join(build.dir, "manifest.json")))
    manifest["models"]["moos"]["provenance"] = f"checkpoint {tmp_path / 'gone'}"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="which is not here"):
        load_build(tmp_path).moos
    manifest["schema"] = 7
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="schema 7"):
        load_build(tmp_path)


def test_paired_latency_alternates_blocks_each_opened_by_an_untimed_call():
    from runtime_py.runners import BaseRunner, paired_latency_ms

    calls = []

    class Recorder(BaseRunner):
        def __init__(self, name):
            self.name, self.input_spec, self.output_names = name, {"x": ((1,), "int64")}, ["y"]

        def _run(self, arrays):
            calls.append((self.name, int(arrays[0][0])))
            return arrays

    a, b = paired_latency_ms(Recorder("A"), Recorder("B"), {"x": np.array([1])}, runs=7, block=3)
    # blocks of 3, 3 and the last 1 timed call per side, each after one untimed call
    assert "".join(c[0] for c in calls) == "AAAA" "BBBB" "AAAA" "BBBB" "AA" "BB"
    assert all(c[1] == 1 for c in calls) and a > 0 and b > 0
