"""The registries' proof: a new quant recipe (XNNPACK fp16, a real one) and a toy third compressor, both defined
here, plug into export.build, runtime_py.parity and its report without editing any of them."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from compressors import spec as specs
from compressors.evo import EvoCompConfig, EvoCompressor
from export import build as build_cli
from export.backends import get_backend
from export.targets import TARGETS, Recipe
from quant.recipe import QuantRecipe, UnknownRecipe
from runtime_py import parity


# ------------------------------------------------------------------------------------- a new quant recipe: fp16
class HalfCompute(nn.Module):
    """The module in fp16 inside, fp32 at its inputs and outputs (the artifact's input spec stays the same):
    XNNPACK runs the half-precision kernels, the casts at both ends are delegated too."""

    def __init__(self, module):
        super().__init__()
        self.inner = module.half()

    def forward(self, *inputs):
        out = self.inner(*(x.half() if x.is_floating_point() else x for x in inputs))
        return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()


XNNPACK_FP16 = QuantRecipe("fp16", "fp16", lambda module, example, calibration=None, float_module_types=(),
                           mask_inputs=(): HalfCompute(module))


# ------------------------------------------------------------------------------------- a toy third compressor
class ToyScorer(nn.Module):
    """Scores 8 tokens of width 4: a 2-layer MLP (the shape of any token-scoring compressor)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, tokens):
        return (self.net(tokens).squeeze(-1),)


def _toy_inputs(seed):
    return (torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 8, 4)).astype(np.float32)),)


def toy_load(path, options):
    module = ToyScorer().eval()
    return specs.Loaded(module, ["scores"], {"provenance": "toy test compressor"}, example=lambda b: _toy_inputs(0),
                        calibration=lambda b: [_toy_inputs(100 + i) for i in range(4)], source=module)


def toy_check(build, arts, ctx):
    """Artifact vs eager on 10 seeded inputs: max-abs and the agreement of the top-4 tokens."""
    a = arts[0]
    runner, ref = build.runner(a), build.reference("toy")
    refs, gots, agree = [], [], []
    for seed in range(10):
        (x,) = _toy_inputs(1000 + seed)
        want = ref(x)[0].detach().numpy()
        got = runner.run({"tokens": x.numpy()})["scores"]
        refs.append(want), gots.append(got)
        agree.append(len(set(np.argsort(-want[0])[:4]) & set(np.argsort(-got[0])[:4])) / 4)
    return {a["file"]: {"numeric": parity.numeric(np.concatenate(refs), np.concatenate(gots)),
                        "decisions": {"top4": {"all": float(np.mean(agree))}}, "latency_ms": None}}


TOY = specs.CompressorSpec(
    name="toy", title="Toy", input_names=("tokens",), load=toy_load,
    reference=lambda info, build_dir: ToyScorer().eval(), parity=f"{__name__}:toy_check",
    thresholds={"fp32": {"top4": 1.0}, "fp16": {"top4": 0.9}, "int8": {"top4": 0.75}, "4bit": {"top4": 0.5}},
    report=lambda d: (f"{d['top4']['all']:.2f}", "-"), decision_label="Toy: top-4 agreement")


@pytest.fixture
def toy_registered(monkeypatch):
    specs.register(TOY)
    monkeypatch.setitem(TARGETS, "toy-test", [Recipe("toy", "xnnpack", "fp32"), Recipe("toy", "onnx", "fp32"),
                                              Recipe("toy", "xnnpack", "int8dyn"), Recipe("toy", "onnx", "int8static")])
    yield
    specs.unregister("toy")


def _build_and_check(out, *args):
    """export.build in this process (so that what the test registered is seen), then runtime_py.parity."""
    code = build_cli.main([*args, "--out", str(out), "--jobs", "1", "--skip-parity"])
    assert code == 0
    assert parity.main([str(out), "--record", "--latency-runs", "1", "--evo-sets", "4"]) == 0
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(out, "parity.md")) as f:
        return manifest, f.read()


def test_a_toy_compressor_builds_and_passes_parity_through_the_registry(toy_registered, tmp_path):
    manifest, report = _build_and_check(tmp_path / "b", "--target", "toy-test", "--model", "toy")
    arts = {a["file"]: a for a in manifest["artifacts"]}
    assert sorted(arts) == ["toy_onnx_fp32.onnx", "toy_onnx_int8static.onnx", "toy_xnnpack_fp32.pte",
                            "toy_xnnpack_int8dyn.pte"]
    assert manifest["models"] == {"toy": {"provenance": "toy test compressor"}}
    for a in arts.values():
        assert a["parity"]["status"] == "pass", (a["file"], a["parity"])
        assert a["input_spec"] == {"tokens": [[1, 8, 4], "float32"]} and a["output_names"] == ["scores"]
    assert arts["toy_xnnpack_fp32.pte"]["parity"]["numeric"]["max_abs"] < 1e-5
    assert arts["toy_onnx_int8static.onnx"]["parity"]["precision"] == "int8"
    assert "Toy: top-4 agreement" in report and "| toy_xnnpack_int8dyn.pte | int8 |" in report


def test_an_unregistered_compressor_is_refused_in_one_line(capsys, tmp_path):
    assert build_cli.main(["--model", "toy", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown model 'toy'" in err and not os.path.exists(tmp_path / "x")


def test_the_xnnpack_fp16_recipe_plugs_in_and_is_judged_as_fp16(monkeypatch, bert_dir, tmp_path):
    xnnpack = get_backend("xnnpack")
    with pytest.raises(UnknownRecipe, match="no quant recipe 'fp16'"):
        xnnpack.recipe("fp16")
    monkeypatch.setitem(xnnpack.recipes, "fp16", XNNPACK_FP16)
    monkeypatch.setitem(TARGETS, "fp16-test", [Recipe("moos", "xnnpack", "fp16", "largest"),
                                               Recipe("evo", "xnnpack", "fp16")])
    evo_dir = tmp_path / "evo"
    model = EvoCompressor(EvoCompConfig(visual_dim=32, text_dim=24, hidden=32, layers=1, heads=2, ffn=64,
                                        max_visual_tokens=36, max_text_tokens=8, grid=(6, 6)))
    model.init_weights(torch.Generator().manual_seed(3))
    model.save(evo_dir)
    manifest, report = _build_and_check(tmp_path / "b", "--target", "fp16-test", "--moos-checkpoint", bert_dir,
                                        "--evo-checkpoint", str(evo_dir), "--seq-lens", "32")
    arts = {a["file"]: a for a in manifest["artifacts"]}
    assert sorted(arts) == ["evo_xnnpack_fp16.pte", "moos_xnnpack_fp16_32.pte"]
    for a in arts.values():
        p = a["parity"]
        assert p["precision"] == "fp16" and p["status"] == "pass", (a["file"], p)
        assert 0 < p["numeric"]["max_abs"] < 0.05  # half precision, not fp32 (0) and not broken
        assert a["delegation"]["partitions"] >= 1
    assert "| moos_xnnpack_fp16_32.pte | fp16 |" in report


def test_parity_refuses_a_quant_recipe_it_does_not_know(tmp_path):
    art = {"file": "x.pte", "backend": "xnnpack", "quant": "int3"}
    with pytest.raises(parity.ManifestError, match="no quant recipe 'int3'"):
        parity.precision_of(art)
