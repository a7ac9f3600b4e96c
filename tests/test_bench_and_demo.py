"""The benchmark and the demo run end to end on small inputs and produce well-formed results."""
import json
import subprocess
import sys

import checkpoints
from compressors.evo import default_evo, keep_count


def test_moos_vs_llmlingua_writes_json_and_markdown(bert_dir, tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "-m", "bench_device.moos_vs_llmlingua", "--checkpoint", bert_dir,
                          "--tokens", "1200", "--repeats", "1", "--out", str(out)],
                         capture_output=True, text=True, cwd=checkpoints.ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["identical_output"] is True
    assert result["prompt_tokens"] >= 1200
    for name in ("llmlingua", "compkit"):
        m = result["median"][name]
        assert m["total_s"] > 0 and 0 < m["forward_s"] <= m["total_s"]
    assert "| compkit |" in (tmp_path / "bench.md").read_text()


def test_benchmark_rejects_bad_arguments(tmp_path):
    run = subprocess.run([sys.executable, "-m", "bench_device.moos_vs_llmlingua", "--checkpoint", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=checkpoints.ROOT)
    assert run.returncode == 2 and "checkpoint directory not found" in run.stderr
    assert not (tmp_path / "x.json").exists()


def test_demo_prints_compressed_prompt_and_maps():
    run = subprocess.run([sys.executable, "-m", "compressors.demo", "--rate", "0.5"],
                         capture_output=True, text=True, cwd=checkpoints.ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    cfg = default_evo().config
    assert default_evo().provenance in run.stdout and "GSM8K" in run.stdout
    assert "kept-token map" in run.stdout and "[" in run.stdout.split("kept-token map")[1]
    rows, cols = cfg.grid
    grid = [l for l in run.stdout.splitlines() if l and set(l) <= {"#", "."} and len(l) == cols]
    assert len(grid) == rows and sum(l.count("#") for l in grid) == keep_count(cfg.max_visual_tokens, ratio=3.0)
