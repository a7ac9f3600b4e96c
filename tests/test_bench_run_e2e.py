"""bench_device.run and bench_device.e2e on tiny configs, on this machine and on the loopback adb device through
Debian's real adb (the host's runner plays the phone's). They check that the commands run and write
well-formed JSON / markdown / PNG; benchmark figures are never asserted (no timed assertions).

The tiny LLM is a one-layer decoder exported with plain torch.export (ExecuTorch's LLM export tool takes
minutes even for tiny shapes); it has the LLM .pte's signature: forward(tokens [1, N] int64, input_pos [1]).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import tiny_build  # noqa: E402
from test_adb_device import ADB, _free_port  # noqa: E402

from adb_loopback_device import LoopbackAdbDevice  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
needs_adb = pytest.mark.skipif(ADB is None, reason="adb missing: apt-get install adb (`make test` does)")


class TinyDecoder(nn.Module):
    def __init__(self, vocab=256, dim=32):
        super().__init__()
        self.emb, self.qkv, self.out = nn.Embedding(vocab, dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, vocab)

    def forward(self, tokens, input_pos):
        x = self.emb(tokens)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        h = x + torch.softmax(q @ k.transpose(-1, -2) / 32 ** 0.5, dim=-1) @ v + input_pos.to(x.dtype)[:, None, None]
        return self.out(h[:, -1])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    n = torch.export.Dim("n", min=2, max=512)
    ep = torch.export.export(TinyDecoder().eval(), (torch.zeros(1, 16, dtype=torch.long), torch.zeros(1, dtype=torch.long)),
                             dynamic_shapes=({1: n}, None))
    llm = root / "tiny_llm.pte"
    llm.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    build = tiny_build.make_tiny_build(str(root / "build"), pte_buckets=(32,), onnx_buckets=(32,),
                                       evo_formats=("xnnpack",), evo_coreml=True)
    return {"root": root, "llm": llm, "build": build, "cache": root / "cache"}


@pytest.fixture
def adb_env(tmp_path):
    """Its own adb server port and HOME, a loopback device; kills the server afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(_free_port()), "HOME": str(home)}
    env.pop("ANDROID_SERIAL", None)
    env.pop("ADB", None)
    old = {k: os.environ.get(k) for k in ("ANDROID_ADB_SERVER_PORT", "HOME")}
    device = LoopbackAdbDevice()
    yield device, env
    device.stop()
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=20, env=env)
    assert old == {k: os.environ.get(k) for k in old}


def cli(module: str, *args, env=None, cache=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    if cache:
        env["COMPKIT_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def check_run_report(stem: Path, remote: bool) -> dict:
    result = json.loads(stem.with_suffix(".json").read_text())
    md = stem.with_suffix(".md").read_text()
    rows = {r["file"]: r for r in result["artifacts"]}
    assert set(rows) == {"moos_xnnpack_fp32_32.pte", "moos_onnx_fp32_32.onnx", "evo_xnnpack_fp32.pte",
                         "evo_coreml_fp16.mlpackage"}
    for name in ("moos_xnnpack_fp32_32.pte", "evo_xnnpack_fp32.pte"):
        r = rows[name]
        assert r["status"] == "ok" and r["runtime"].startswith("compkit_runner")
        assert len(r["iterations_ms"]) == 4 and all(t > 0 for t in r["iterations_ms"])
        assert min(r["iterations_ms"]) <= r["median_ms"] <= max(r["iterations_ms"])
    onnx = rows["moos_onnx_fp32_32.onnx"]
    if remote:
        assert onnx["status"] == "skipped" and "not on device" in onnx["reason"]
    else:
        assert onnx["status"] == "ok" and onnx["runtime"].startswith("onnxruntime")
    assert rows["evo_coreml_fp16.mlpackage"]["status"] == "skipped"
    assert "macOS" in rows["evo_coreml_fp16.mlpackage"]["reason"]
    assert md.count("\n| ") == 1 + len(rows) and "moos_xnnpack_fp32_32.pte" in md
    return result


def test_run_local(work, tmp_path):
    stem = tmp_path / "artifacts"
    r = cli("bench_device.run", "--device", "local", "--build", work["build"], "--iters", 4, "--warmup", 1, "--out", stem)
    assert r.returncode == 0, r.stderr
    result = check_run_report(stem, remote=False)
    assert result["device_info"]["kind"] == "local"


@needs_adb
def test_run_adb_loopback(work, tmp_path, adb_env):
    device, env = adb_env
    stem = tmp_path / "artifacts"
    r = cli("bench_device.run", "--device", f"adb:{device.serial}", "--build", work["build"], "--iters", 4,
            "--warmup", 1, "--out", stem, env=env)
    assert r.returncode == 0, r.stderr
    result = check_run_report(stem, remote=True)
    assert result["device_info"]["kind"] == "adb" and result["device_info"]["model"]
    # the runner and the models went to the device, and the run cleaned its work dir up afterwards
    assert not device.host_path("/data/local/tmp/compkit").exists()


def test_run_bad_build_is_one_line(tmp_path):
    r = cli("bench_device.run", "--device", "local", "--build", tmp_path / "nope")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "build folder not found" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("bench_device.run", "--device", "local", "--build", tmp_path / "empty")
    assert r.returncode == 1 and "no manifest.json" in r.stderr and r.stderr.count("\n") == 1


def check_e2e_report(stem: Path, ratios, device_kind: str) -> dict:
    result = json.loads(stem.with_suffix(".json").read_text())
    png = stem.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    md = stem.with_suffix(".md").read_text()
    assert f"![speedup against ratio]({stem.name}.png)" in md
    text = result["text"]
    assert text["tokens"] == 160
    assert [(r["compressor"], r["target_ratio"]) for r in text["rows"]] == [(c, x) for c in ("minilm", "mbert") for x in ratios]
    for row in text["rows"]:
        assert row["tokens_in"] == 160 and 1 <= row["tokens_out"] <= 160
        assert row["compress_ms"] > 0 and row["prefill_ms"] > 0
        assert row["speedup"] == pytest.approx(text["full_prefill_ms"] / (row["compress_ms"] + row["prefill_ms"]))
        # CPU time exists only for work timed on this machine: locally everything, on adb nothing
        assert (row["cpu"]["speedup"] is None) == (device_kind == "adb")
        # the compression ran in the runner's pipeline mode: its stages tile the total
        st = row["stages_ms"]
        assert st["total"] == pytest.approx(row["compress_ms"], rel=1e-6) and st["forward"] > 0
        assert st["tokenize"] + st["forward"] + st["postprocess"] <= st["total"] * 1.05
        assert 0 < st["non_forward_share"] < 1 and row["windows"] >= 1
    at_4x = [r["tokens_out"] for r in text["rows"] if r["target_ratio"] == 4]
    assert all(n < 80 for n in at_4x)  # 4x compression really shortened the prompt
    vision = result["vision"]
    assert [r["visual_kept"] for r in vision["rows"]] == [18, 12, 9]  # 36 visual tokens at 2x, 3x, 4x
    for row in vision["rows"]:
        assert row["tokens_out"] == row["visual_kept"] + 8
        assert row["evo_stages_ms"]["forward"] > 0 and row["evo_ms"] == pytest.approx(row["evo_stages_ms"]["total"])
        assert row["ttft_ms"] == pytest.approx(vision["vit_ms"] + row["evo_ms"] + row["prefill_ms"])
    where = result["timed_where"]
    assert set(where) >= {"llm_prefill", "moos_compression", "evo_compression", "vit"}
    assert ("device adb:" in where["llm_prefill"]) == (device_kind == "adb")
    assert all("pipeline mode" in where[k] for k in ("moos_compression", "evo_compression"))
    assert "Where the compression time goes" in md
    assert result["compressor_quant"] == "int8dyn" and "int8dyn XNNPACK" in where["moos_compression"]
    assert result["device_info"]["kind"] == device_kind
    return result


E2E_ARGS = ("--preset", "tiny", "--prompt-tokens", 160, "--ratios", "1,2,4", "--repeats", 1)


def test_e2e_local(work, tmp_path):
    stem = tmp_path / "e2e"
    r = cli("bench_device.e2e", "--device", "local", "--llm-pte", work["llm"], *E2E_ARGS, "--out", stem,
            cache=work["cache"])
    assert r.returncode == 0, r.stderr[-2000:]
    result = check_e2e_report(stem, [1, 2, 4], "local")
    assert result["timed_where"]["moos_compression"].startswith("device local")


@pytest.mark.slow  # pushes the runner, 8 tiny .pte files and a tokenizer through the loopback device
@needs_adb
def test_e2e_adb_loopback(work, tmp_path, adb_env):
    device, env = adb_env
    stem = tmp_path / "e2e"
    r = cli("bench_device.e2e", "--device", f"adb:{device.serial}", "--llm-pte", work["llm"], *E2E_ARGS,
            "--out", stem, env=env, cache=work["cache"])
    assert r.returncode == 0, r.stderr[-2000:]
    result = check_e2e_report(stem, [1, 2, 4], "adb")
    assert all(result["timed_where"][k].startswith("device adb:") for k in ("moos_compression", "evo_compression", "vit"))
    # 3 buckets per compressor, the ViT and EvoComp: exported for the device and cached
    assert len(list((work["cache"] / "e2e").glob("*.pte"))) == 8


def test_e2e_bad_arguments_are_one_line(tmp_path):
    for args, message in [(("--ratios", "2,x"), "--ratios"), (("--ratios", "0.5"), "--ratios"),
                          (("--llm-pte", tmp_path / "missing.pte"), "no such file"),
                          (("--eager-llm", "--device", "adb:x"), "--device local")]:
        r = cli("bench_device.e2e", "--preset", "tiny", *args, "--out", tmp_path / "x")
        assert r.returncode != 0, args
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not list(tmp_path.glob("x.*"))


def test_a_runner_that_cannot_be_built_fails_once_for_every_pte(work, monkeypatch):
    """A failing native-runner build is tried once, and every .pte row carries that one reason; ONNX artifacts
    (timed in this process) are still measured."""
    from bench_device import build_runner, run as bench_run

    calls = []

    def broken_build(*a, **k):
        calls.append(1)
        raise build_runner.BuildError("cmake configure failed: no C++ compiler (install g++)")

    monkeypatch.setattr(build_runner, "ensure_runner", broken_build)
    report = bench_run.run("local", work["build"], iters=2, warmup=1)
    rows = {r["file"]: r for r in report["artifacts"]}
    pte = [r for f, r in rows.items() if f.endswith(".pte")]
    assert len(pte) >= 2 and len(calls) == 1
    assert {r["status"] for r in pte} == {"error"}
    assert len({r["reason"] for r in pte}) == 1 and "no C++ compiler" in pte[0]["reason"]
    assert any(f.endswith(".onnx") and r["status"] == "ok" for f, r in rows.items())
