"""`python -m runtime_py.parity` on a small build of real artifacts: sha256 integrity, numeric and decision
parity, thresholds per precision, --record into manifest.json, exit codes."""
import fnmatch
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tiny_build
from compressors import corpus as shipped_corpus
from runtime_py import parity, parity_moos
from runtime_py.manifest import artifact_sha256

PERTURBED = ("moos_onnx_int8dyn_32.onnx", "moos_onnx_int8dyn_64.onnx")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    """moos: ExecuTorch fp32 (bucket 32), ONNX fp32 (32, 64) and a perturbed "int8dyn" ONNX pair; evo: ONNX fp32
    and a CoreML fp16 .mlpackage (which cannot run here)."""
    root = tmp_path_factory.mktemp("parity")
    return tiny_build.make_tiny_build(str(root / "build"), pte_buckets=(32,), onnx_buckets=(32, 64),
                                      evo_formats=("onnx",), evo_coreml=True, perturbed_quant="int8dyn")


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    """Six prompts of different kinds, two longer than a 512-piece window."""
    rows = shipped_corpus.prompts()
    long = [r["text"] for r in rows if len(r["text"]) > 3500][:2]
    short = [r["text"] for r in rows if r["kind"] in ("code", "table-like", "multilingual", "math")][:4]
    return tiny_build.write_prompts(str(tmp_path_factory.mktemp("corpus") / "prompts.jsonl"), long + short)


def copy_build(src, dst, drop=()):
    """A copy of the build without the `drop` artifacts (files and manifest entries)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*drop))
    manifest = json.load(open(os.path.join(dst, "manifest.json")))
    manifest["artifacts"] = [a for a in manifest["artifacts"] if not any(fnmatch.fnmatch(a["file"], d) for d in drop)]
    json.dump(manifest, open(os.path.join(dst, "manifest.json"), "w"))
    return dst


def run(build, prompts_file, *extra):
    return parity.main([build, "--prompts", prompts_file, "--evo-sets", "6", "--latency-runs", "1", "--threads", "1", *extra])


def test_clean_build_passes_and_records(full_build, prompts_file, tmp_path, capsys):
    build = copy_build(full_build, str(tmp_path / "b"), drop=PERTURBED)
    before = json.load(open(os.path.join(build, "manifest.json")))
    assert run(build, prompts_file, "--record") == 0
    out = capsys.readouterr().out
    assert out.startswith("| artifact | precision |") and "moos_xnnpack_fp32_32.pte" in out
    report = json.load(open(os.path.join(build, "parity.json")))
    assert open(os.path.join(build, "parity.md")).read().count("| moos_") == 3
    assert report["corpus"]["prompts"] == 6 and report["corpus"]["prompts_longer_than_512_pieces"] >= 2
    by_file = {r["file"]: r for r in report["artifacts"]}
    for f in ("moos_xnnpack_fp32_32.pte", "moos_onnx_fp32_32.onnx", "moos_onnx_fp32_64.onnx", "evo_onnx_fp32.onnx"):
        r = by_file[f]
        assert r["status"] == "pass" and r["precision"] == "fp32"
        assert 0 <= r["numeric"]["max_abs"] <= 1e-4 and r["latency_ms"] > 0
        d = r["decisions"]
        values = list(d["word_agreement"].values()) + list(d["exact_text"].values()) if f.startswith("moos") else list(d["iou"].values())
        assert values and all(v == 1.0 for v in values)
    assert set(by_file["moos_onnx_fp32_64.onnx"]["decisions"]["word_agreement"]) == {"0.25", "0.33", "0.5"}
    assert by_file["moos_onnx_fp32_64.onnx"]["decisions"]["outlier_weights"] == [0.0, parity_moos.MOOSCOMP_OUTLIER_WEIGHT]
    assert set(by_file["evo_onnx_fp32.onnx"]["decisions"]["iou"]) == {"2x", "3x", "4x"}
    coreml = by_file["evo_coreml_fp16.mlpackage"]
    assert coreml["status"] == "skipped" and "needs macOS" in coreml["reasons"][0] and "numeric" not in coreml
    assert "skipped: CoreML prediction needs macOS" in out

    after = json.load(open(os.path.join(build, "manifest.json")))
    for a, b in zip(before["artifacts"], after["artifacts"]):
        assert b["sha256"] == a["sha256"] == artifact_sha256(os.path.join(build, b["file"]))
        if b["file"].endswith(".mlpackage"):
            assert b["enabled"] is True and b["latency_ms"] is None and b["parity"]["status"] == "skipped"
        else:
            assert b["enabled"] is True and b["disabled_reason"] is None and b["latency_ms"] > 0
            assert b["parity"]["status"] == "pass" and b["parity"]["numeric"] == by_file[b["file"]]["numeric"]
    assert not [f for f in os.listdir(build) if f.endswith(".tmp")]


def test_perturbed_artifact_is_disabled(full_build, prompts_file, tmp_path, capsys):
    build = copy_build(full_build, str(tmp_path / "b"), drop=("evo_*", "*.pte"))
    assert run(build, prompts_file, "--record") == 1
    assert "2 artifact(s) failed parity: moos_onnx_int8dyn_32.onnx, moos_onnx_int8dyn_64.onnx" in capsys.readouterr().err
    manifest = json.load(open(os.path.join(build, "manifest.json")))
    by_file = {a["file"]: a for a in manifest["artifacts"]}
    for f in PERTURBED:
        a = by_file[f]
        assert a["enabled"] is False and a["disabled_reason"].startswith("parity: word agreement")
        assert a["parity"]["precision"] == "int8" and min(a["parity"]["decisions"]["word_agreement"].values()) < 0.98
    assert all(by_file[f]["enabled"] for f in by_file if f not in PERTURBED)
    # re-checking a build whose artifacts parity disabled gives the same verdict; --allow-disabled exits 0
    assert run(build, prompts_file, "--record", "--allow-disabled") == 0
    again = {a["file"]: a for a in json.load(open(os.path.join(build, "manifest.json")))["artifacts"]}
    assert [again[f]["enabled"] for f in PERTURBED] == [False, False]


def test_fp32_artifact_with_small_numeric_error_fails_max_abs():
    rec = {"numeric": {"max_abs": 3e-4, "mean_abs": 1e-5, "psnr_db": 80.0},
           "decisions": {"word_agreement": {"0.25": 1.0}, "exact_text": {"0.25": 1.0}}}
    assert parity.judge(rec, "fp32", "moos") == ["max-abs 3.00e-04 > 1e-04"]
    assert parity.judge(rec, "int8", "moos") == []
    rec["decisions"]["word_agreement"]["0.5"] = 0.97
    assert parity.judge(rec, "int8", "moos") == ["word agreement 0.9700 < 0.98 at 0.5"]
    assert parity.judge({"numeric": {"nonfinite": 3}, "decisions": {}}, "fp16", "moos") == ["3 non-finite outputs"]
    assert parity.judge({"decisions": {"iou": {"2x": 1.0, "3x": 0.94}}}, "4bit", "evo") == ["top-k IoU 0.9400 < 0.95 at 3x"]


def test_numeric_metrics():
    ref = np.array([0.0, 0.5, 1.0], np.float32)
    assert parity.numeric(ref, ref) == {"max_abs": 0.0, "mean_abs": 0.0, "psnr_db": None}
    m = parity.numeric(ref, ref + np.float32(0.1))
    assert m["max_abs"] == pytest.approx(0.1) and m["psnr_db"] == pytest.approx(20.0, abs=1e-3)
    assert parity.numeric(ref, np.array([0, np.nan, 1], np.float32))["nonfinite"] == 1


def test_tampered_artifact_is_caught_by_sha256(full_build, tmp_path):
    build = copy_build(full_build, str(tmp_path / "b"), drop=PERTURBED)
    path = os.path.join(build, "moos_onnx_fp32_64.onnx")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    open(path, "wb").write(bytes(data))
    member = os.path.join(build, "evo_coreml_fp16.mlpackage", "Manifest.json")  # a directory artifact too
    open(member, "a").write(" ")
    manifest_before = open(os.path.join(build, "manifest.json")).read()
    proc = subprocess.run([sys.executable, "-m", "runtime_py.parity", build, "--record"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2
    assert errors[0].startswith("error: moos_onnx_fp32_64.onnx: sha256 ") and "changed or corrupted" in errors[0]
    assert errors[1].startswith("error: evo_coreml_fp16.mlpackage: sha256 ")
    assert open(os.path.join(build, "manifest.json")).read() == manifest_before
    assert not os.path.exists(os.path.join(build, "parity.json"))


def test_bad_invocations_are_one_line_errors(full_build, tmp_path, capsys):
    assert parity.main([str(tmp_path / "missing")]) == 2
    assert "build folder not found" in capsys.readouterr().err
    build = copy_build(full_build, str(tmp_path / "b"), drop=PERTURBED)
    os.remove(os.path.join(build, "evo_onnx_fp32.onnx"))
    assert parity.main([build]) == 2
    assert "evo_onnx_fp32.onnx: missing from" in capsys.readouterr().err
    build2 = copy_build(full_build, str(tmp_path / "c"), drop=PERTURBED)
    assert parity.main([build2, "--prompts", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: parity corpus not found") and "\n" not in err


def test_corpus_readers(tmp_path):
    from runtime_py import corpus

    gsm = tmp_path / "gsm8k.jsonl"
    gsm.write_text("\n".join(json.dumps({"question": f"Q{i}? Tom has {i} apples.", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"})
                             for i in range(5)) + "\n")
    texts = corpus.load_gsm8k(str(gsm), limit=3)
    assert texts == [f"Question: Q{i}? Tom has {i} apples.\nAnswer: {i} + 1 = {i + 1}\n#### {i + 1}" for i in range(3)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(corpus.CorpusError, match="bad.jsonl:2: not a JSON line"):
        corpus.load_prompts(str(bad))
    bad.write_text('{"text": "a prompt, not GSM8K"}\n')
    with pytest.raises(corpus.CorpusError, match="expected GSM8K lines"):
        corpus.load_gsm8k(str(bad))
    sets = corpus.evo_token_sets(36, 32, 8, 24, count=3, grid=(6, 6))
    assert len(sets) == 3 and sets[0]["visual_tokens"].shape == (36, 32) and sets[0]["text_mask"].shape == (8,)
    assert not np.array_equal(sets[0]["visual_tokens"], sets[1]["visual_tokens"])
    assert np.array_equal(sets[2]["text_embeds"], corpus.evo_token_sets(36, 32, 8, 24, count=3, grid=(6, 6))[2]["text_embeds"])


def test_topk_swaps_within_numeric_error_are_ties():
    ref = np.array([0.9, 0.5, 0.30001, 0.3, 0.1], np.float32)
    got = ref + np.array([0, 0, -2e-5, 2e-5, 0], np.float32)  # the 3rd and 4th swap: a tie fp32 noise decides
    i_ref, i_got = np.array([0, 1, 2]), np.array([0, 1, 3])
    assert parity.iou_beyond_ties(ref, got, i_ref, i_got) == 1.0
    far = ref.copy()
    far[3] = 0.2  # same scores, yet a token ranked well below the boundary is kept: not a tie
    assert parity.iou_beyond_ties(far, far, i_ref, i_got) == pytest.approx(2 / 4)
    assert parity.iou_beyond_ties(ref, ref, i_ref, i_ref) == 1.0
