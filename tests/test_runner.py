"""The native runner (bench_device/runner) built against the executorch wheel, on real .pte files.

Models are exported here with torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) and the
runner's dumped outputs are compared with eager PyTorch.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_device.build_runner import BuildError, ensure_runner, main as build_main


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(16, 32), torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class TokenModel(torch.nn.Module):
    """int32 token ids -> embedding -> linear -> softmax: rows of the output sum to one."""

    def __init__(self, vocab=100):
        super().__init__()
        self.emb, self.head = torch.nn.Embedding(vocab, 16), torch.nn.Linear(16, 8)

    def forward(self, ids):
        return self.head(self.emb(ids)).softmax(-1)


class ByteEmbeddingModel(torch.nn.Module):
    """The quantized_decomposed.embedding_byte op that 8-bit embedding .pte files carry."""

    def __init__(self, vocab=50):
        super().__init__()
        w = torch.randn(vocab, 16)
        scales = w.abs().amax(1) / 127
        self.register_buffer("w", torch.round(w / scales[:, None]).clamp(-128, 127).to(torch.int8))
        self.register_buffer("scales", scales)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, ids):
        x = torch.ops.quantized_decomposed.embedding_byte.dtype(
            self.w, self.scales, None, -128, 127, ids, dtype=torch.float32)
        return self.head(x)


def _export(model, example, path, dynamic_shapes=None, **lower_kwargs):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(model, example, dynamic_shapes=dynamic_shapes)
    program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], **lower_kwargs).to_executorch()
    path.write_bytes(program.buffer)
    return path


@pytest.fixture(scope="module")
def runner():
    return ensure_runner()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import executorch.exir.passes._quant_patterns_and_replacements  # noqa: F401  registers embedding_byte.dtype
    from executorch.exir import EdgeCompileConfig

    d = tmp_path_factory.mktemp("pte")
    torch.manual_seed(0)
    mlp, tok, qemb = Mlp().eval(), TokenModel().eval(), ByteEmbeddingModel().eval()
    batch = torch.export.Dim("batch", max=8)
    return {
        "mlp": (_export(mlp, (torch.randn(2, 16),), d / "mlp.pte", dynamic_shapes=({0: batch},)), mlp),
        "tok": (_export(tok, (torch.randint(0, 100, (1, 12), dtype=torch.int32),), d / "tok.pte"), tok),
        "qemb": (_export(qemb, (torch.randint(0, 50, (1, 10)),), d / "qemb.pte",
                         compile_config=EdgeCompileConfig(_check_ir_validity=False)), qemb),
        # int32 ids, which the embedding_byte kernel rejects with an abort at run time
        "qemb32": (_export(qemb, (torch.randint(0, 50, (1, 10), dtype=torch.int32),), d / "qemb32.pte",
                           compile_config=EdgeCompileConfig(_check_ir_validity=False)), qemb),
    }


def run(runner, *args, check=True):
    proc = subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    return proc


def read_output(out_dir, index=0):
    meta = json.loads((out_dir / f"output_{index}.json").read_text())
    data = np.fromfile(out_dir / f"output_{index}.bin", dtype=meta["dtype"]).reshape(meta["shape"])
    return data, meta


def check_report(report, iters):
    assert len(report["iterations_ms"]) == iters
    assert all(x > 0 for x in report["iterations_ms"])
    assert report["avg_inference_latency(ms)"] == pytest.approx(np.mean(report["iterations_ms"]), abs=1e-5)
    assert min(report["iterations_ms"]) <= report["trimmean_inference_latency(ms)"] <= max(report["iterations_ms"])
    assert report["model_load_time(ms)"] > 0 and report["peak_rss_kb"] > 0
    assert "XnnpackBackend" in report["backends"]


@pytest.mark.parametrize("name, x", [
    ("mlp", torch.randn(5, 16)),  # batch 5 of a dynamic dim (max 8), so --shape is needed
    ("tok", torch.randint(0, 100, (1, 12), dtype=torch.int32)),
    ("qemb", torch.randint(0, 50, (1, 10))),
])
def test_inputs_from_files_match_eager(runner, models, tmp_path, name, x):
    pte, model = models[name]
    x.numpy().tofile(tmp_path / "x.bin")
    shape = "x".join(map(str, x.shape))
    report = run(runner, "--model", pte, "--input", f"0={tmp_path / 'x.bin'}", "--shape", f"0={shape}",
                 "--iters", 4, "--warmup", 1, "--output-dir", tmp_path / "out")
    check_report(report, 4)
    assert report["inputs"] == [{"index": 0, "name": "", "shape": list(x.shape),
                                 "dtype": str(x.numpy().dtype), "source": "file"}]
    got, meta = read_output(tmp_path / "out")
    with torch.no_grad():
        want = model(x).numpy()
    assert report["outputs"] == [{"index": 0, "shape": list(want.shape), "dtype": "float32"}]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_inputs_from_metadata(runner, models, tmp_path):
    pte, model = models["tok"]
    report = run(runner, "--model", pte, "--vocab", 100, "--iters", 3, "--seed", 7, "--output-dir", tmp_path / "a")
    check_report(report, 3)
    assert report["inputs"][0]["shape"] == [1, 12] and report["inputs"][0]["dtype"] == "int32"
    assert report["inputs"][0]["source"] == "random"
    probs, _ = read_output(tmp_path / "a")
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # The same seed gives the same random ids, another seed other ids.
    run(runner, "--model", pte, "--vocab", 100, "--iters", 1, "--seed", 7, "--output-dir", tmp_path / "b")
    run(runner, "--model", pte, "--vocab", 100, "--iters", 1, "--seed", 8, "--output-dir", tmp_path / "c")
    assert np.array_equal(probs, read_output(tmp_path / "b")[0])
    assert not np.array_equal(probs, read_output(tmp_path / "c")[0])
    # A float input with a dynamic dim is generated at its upper bound.
    report = run(runner, "--model", models["mlp"][0], "--iters", 2, "--threads", 1)
    assert report["inputs"][0]["shape"] == [8, 16] and report["outputs"][0]["shape"] == [8, 4]
    assert report["threads"] == 1


def test_ones_fill(runner, models, tmp_path):
    pte, model = models["tok"]
    run(runner, "--model", pte, "--ones", 0, "--iters", 1, "--output-dir", tmp_path)
    got, _ = read_output(tmp_path)
    with torch.no_grad():
        want = model(torch.ones(1, 12, dtype=torch.int32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_etdump_has_per_op_events(runner, models, tmp_path):
    from executorch.devtools import Inspector

    report = run(runner, "--model", models["mlp"][0], "--iters", 2, "--warmup", 1, "--etdump", tmp_path / "p.etdp")
    assert report["etdump"] == str(tmp_path / "p.etdp")
    inspector = Inspector(etdump_path=str(tmp_path / "p.etdp"))
    events = {e.name: e for block in inspector.event_blocks for e in block.events}
    assert "DELEGATE_CALL" in events
    assert len(events["Method::execute"].perf_data.raw) == 3  # warm-up + timed runs
    assert any("GEMM" in name for name in events)  # XNNPACK's own operator events


def _one_line_error(proc, *words):
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("compkit_runner: error:"), proc.stderr
    for word in words:
        assert word in lines[0]


def test_bad_inputs_fail_with_one_line(runner, models, tmp_path):
    mlp = models["mlp"][0]
    _one_line_error(run(runner, "--model", tmp_path / "missing.pte", check=False), "not found", "missing.pte")
    (tmp_path / "cut.pte").write_bytes(mlp.read_bytes()[:1000])
    _one_line_error(run(runner, "--model", tmp_path / "cut.pte", check=False), "InvalidProgram", "too small")
    (tmp_path / "short.bin").write_bytes(b"\0" * 12)
    _one_line_error(run(runner, "--model", mlp, "--input", f"0={tmp_path / 'short.bin'}", check=False),
                    "12 bytes", "expects 512")
    _one_line_error(run(runner, "--model", mlp, "--method", "encode", check=False), "unknown method 'encode'", "forward")
    _one_line_error(run(runner, "--model", mlp, "--input", f"3={tmp_path / 'short.bin'}", check=False), "has 1 inputs")
    _one_line_error(run(runner, "--model", mlp, "--iters", 0, check=False), "--iters")
    _one_line_error(run(runner, "--model", mlp, "--bogus", 1, check=False), "unknown flag")
    _one_line_error(run(runner, "--model", "--iters", 3, check=False), "--model needs a value")
    _one_line_error(run(runner, "--model", mlp, "--shape", "0=9x16", check=False), "maximum capacity")  # dim max is 8
    # ExecuTorch's own reason reaches the message: ids beyond the embedding table.
    _one_line_error(run(runner, "--model", models["tok"][0], "--vocab", 1000, check=False), "--vocab", "weight.size(0) 100")
    # A kernel that aborts (embedding_byte takes int64 ids only) still gives one line.
    _one_line_error(run(runner, "--model", models["qemb32"][0], "--vocab", 50, check=False), "aborted", "Long")
    (tmp_path / "out").mkdir()
    _one_line_error(run(runner, "--model", mlp, "--input", f"0={tmp_path / 'short.bin'}",
                        "--output-dir", tmp_path / "out", check=False))
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


def test_build_is_cached(runner):
    before = runner.stat().st_mtime_ns
    assert ensure_runner() == runner
    assert runner.stat().st_mtime_ns == before


def test_build_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.20)\nproject(x CXX)\n"
                                        "add_executable(compkit_runner bad.cpp)\n")
    (src / "bad.cpp").write_text("int main() { return undefined_name; }\n")
    with pytest.raises(BuildError, match=r"compiling the runner failed .*undefined_name.*full log: .*build\.log"):
        ensure_runner(tmp_path / "b1", source_dir=src)
    (src / "CMakeLists.txt").write_text('message(FATAL_ERROR "no toolchain here")\n')
    with pytest.raises(BuildError, match="cmake configure failed .*no toolchain here"):
        ensure_runner(tmp_path / "b2", source_dir=src)
    assert not (tmp_path / "b2" / "compkit-build.stamp").exists()


def test_build_cli_prints_the_binary(runner, capsys):
    assert build_main([]) == 0
    assert Path(capsys.readouterr().out.strip()) == runner


# ---------------------------------------------------------------- pipeline mode (runtime_cpp's core inside)
PROMPT = ("The meeting moved to Thursday at 10:00 in room 4B. Bring the Q3 numbers and the slides.\n"
          "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
          "How many clips did Natalia sell altogether in April and May?\n")


@pytest.fixture(scope="module")
def pipeline_build(tmp_path_factory):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_build

    root = tmp_path_factory.mktemp("pipeline")
    return Path(tiny_build.make_tiny_build(str(root / "build"), pte_buckets=(32, 64), onnx_buckets=(),
                                           evo_formats=("xnnpack",)))


def moos_args(build, text_file, *extra):
    return ["--pipeline", "moos", "--model", build / "moos_xnnpack_fp32_32.pte", "--model",
            build / "moos_xnnpack_fp32_64.pte", "--tokenizer", build / "moos_tokenizer", "--text-file", text_file, *extra]


def check_stages(report, names, iters):
    stages = report["stages_ms"]
    assert list(stages) == names and all(len(stages[n]) == iters for n in names)
    for i in range(iters):
        parts = sum(stages[n][i] for n in names[:-1])
        assert 0 < parts <= stages["total"][i] * 1.001 + 1e-3  # the stages tile the total
    assert all(x > 0 for x in stages["forward"])
    assert report["median_inference_latency(ms)"] == pytest.approx(np.median(stages["total"]), abs=1e-5)
    assert report["stages_median_ms"]["forward"] == pytest.approx(np.median(stages["forward"]), abs=1e-5)
    assert report["model_load_time(ms)"] > 0 and report["peak_rss_kb"] > 0


@pytest.mark.parametrize("rate", [0.33, 0.5])
def test_moos_pipeline_compresses_exactly_as_the_python_reference(runner, pipeline_build, tmp_path, rate):
    """The same .pte files through runtime_py (ExecuTorch's Python runtime + compressors/moos.py) and through the
    runner's C++ pipeline give the same probabilities, so the compressed prompts must be identical."""
    from runtime_py.pipeline import load_build

    build = load_build(pipeline_build)
    reference = build.moos_compressor([a for a in build.artifacts("moos") if a["backend"] == "xnnpack"])
    text = PROMPT * 4
    expected = reference.compress_prompt(text, rate=rate)
    (tmp_path / "p.txt").write_text(text, encoding="utf-8")
    out = run(runner, *moos_args(pipeline_build, tmp_path / "p.txt", "--rate", rate, "--iters", 3))
    assert out["compressed"] == expected["compressed_prompt"]
    assert out["windows"] >= 4  # several windows of at most 64 pieces, the largest bucket
    assert 0 < out["kept_words"] < out["words"] and out["compressed_tokens"] < out["origin_tokens"]
    check_stages(out, ["tokenize", "forward", "postprocess", "total"], 3)


def test_evo_pipeline_keeps_the_python_reference_indices(runner, pipeline_build, tmp_path):
    from runtime_py.pipeline import evo_compress, load_build

    build = load_build(pipeline_build)
    artifact = next(a for a in build.artifacts("evo") if a["backend"] == "xnnpack")
    rng = np.random.default_rng(3)
    v, e = rng.standard_normal((36, 32), dtype=np.float32), rng.standard_normal((8, 24), dtype=np.float32)
    (tmp_path / "v.bin").write_bytes(v.tobytes())
    (tmp_path / "e.bin").write_bytes(e.tobytes())
    for ratio in (2, 3, 4):
        _, idx = evo_compress(build.runner(artifact), v, e, ratio=ratio)
        out = run(runner, "--pipeline", "evo", "--model", pipeline_build / artifact["file"], "--ratio", ratio,
                  "--input", f"0={tmp_path / 'v.bin'}", "--input", f"1={tmp_path / 'e.bin'}", "--iters", 2)
        assert out["kept_indices"] == idx.tolist() and out["kept"] == len(idx) == round(36 / ratio)
        check_stages(out, ["forward", "postprocess", "total"], 2)


def test_pipeline_bad_inputs_fail_with_one_line(runner, pipeline_build, tmp_path):
    b = pipeline_build
    (tmp_path / "ok.txt").write_text(PROMPT, encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"caf\xc3 au lait")
    ok = tmp_path / "ok.txt"
    _one_line_error(run(runner, *moos_args(b, tmp_path / "bad.txt"), check=False), "UTF-8")
    _one_line_error(run(runner, *moos_args(b, tmp_path / "none.txt"), check=False), "cannot read")
    _one_line_error(run(runner, *moos_args(b, ok, "--rate", 0), check=False), "--rate")
    _one_line_error(run(runner, *moos_args(b, ok, "--rate", "x"), check=False), "wants a number")
    _one_line_error(run(runner, "--pipeline", "moos", "--model", b / "moos_xnnpack_fp32_32.pte", "--text-file", ok,
                        check=False), "--tokenizer")
    _one_line_error(run(runner, "--pipeline", "moos", "--model", b / "moos_xnnpack_fp32_32.pte", "--tokenizer",
                        tmp_path, "--text-file", ok, check=False), "tokenizer")
    _one_line_error(run(runner, "--pipeline", "moos", "--model", b / "evo_xnnpack_fp32.pte", "--tokenizer",
                        b / "moos_tokenizer", "--text-file", ok, check=False), "MOOSComp scorer")
    _one_line_error(run(runner, "--pipeline", "evo", "--model", b / "moos_xnnpack_fp32_32.pte", check=False),
                    "not an EvoComp scorer")
    _one_line_error(run(runner, "--pipeline", "evo", "--model", b / "evo_xnnpack_fp32.pte", "--ratio", 0.5,
                        check=False), "--ratio")
    _one_line_error(run(runner, "--pipeline", "evo", "--model", b / "evo_xnnpack_fp32.pte", "--keep", 99,
                        check=False), "k must be in")
    _one_line_error(run(runner, "--pipeline", "zip", "--model", b / "evo_xnnpack_fp32.pte", check=False), "moos or evo")
    _one_line_error(run(runner, "--model", b / "evo_xnnpack_fp32.pte", "--model", b / "evo_xnnpack_fp32.pte",
                        check=False), "--model given twice")
