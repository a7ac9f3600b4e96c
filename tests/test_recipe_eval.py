"""runtime_py/recipe_eval.py: ExecuTorch's recipe API and compkit's lowering on the same tiny EvoComp."""
from __future__ import annotations

import json
import math

import pytest
import torch

from compressors.evo import EvoCompConfig, EvoCompressor
from export.build import load_job
from runtime_py import recipe_eval
from test_export import TINY_EVO


@pytest.fixture
def job(tmp_path):
    model = EvoCompressor(EvoCompConfig(**TINY_EVO))
    model.init_weights(torch.Generator().manual_seed(3))
    return load_job("evo", str(model.save(tmp_path / "tiny-evo")), {})


def test_both_paths_export_run_and_are_judged(job, tmp_path):
    records = recipe_eval.evaluate({"evo": (job, None)}, str(tmp_path), quants=("fp32", "int8dyn"), runs=2)
    assert [(r["quant"], r["path"]) for r in records] == [("fp32", "compkit"), ("fp32", "recipe_api"),
                                                          ("int8dyn", "compkit"), ("int8dyn", "recipe_api")]
    for r in records:
        assert set(r) == set(recipe_eval.FIELDS) and r["error"] is None, r
        assert r["bytes"] > 0 and r["median_ms"] > 0 and math.isfinite(r["max_abs_diff"])
    fp32 = [r for r in records if r["quant"] == "fp32"]
    assert all(r["max_abs_diff"] < 1e-4 and r["topk_iou"] == 1.0 for r in fp32), fp32
    assert records[0]["partitions"] == 1  # compkit's rewrites put the whole EvoComp in one XNNPACK partition
    assert "| evo | int8dyn | recipe_api |" in recipe_eval.markdown(records)


def test_a_path_that_fails_is_recorded_not_raised(job, tmp_path, monkeypatch):
    def refuse(*args):
        raise RuntimeError("XNNPACK refused the program\nsecond line")
    monkeypatch.setattr(recipe_eval, "recipe_export", refuse)
    records = recipe_eval.evaluate({"evo": (job, None)}, str(tmp_path), quants=("fp32",), runs=1)
    assert records[1]["error"] == "RuntimeError: XNNPACK refused the program" and records[0]["error"] is None
    assert "failed: RuntimeError" in recipe_eval.markdown(records)
    json.dumps(records, allow_nan=False)
