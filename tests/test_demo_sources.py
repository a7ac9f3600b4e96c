"""The demo apps' sources, checked on a machine with no Android SDK/NDK, Gradle, Xcode or Swift compiler.

- Every Kotlin (.kt, .kts) and Swift file parses with a real grammar (tree-sitter); any ERROR or MISSING
  node fails, naming file, line and column. Every XML file parses; project.yml loads and points at files
  that exist. Tree-sitter catches syntax slips only; the Kotlin that needs neither the Android SDK,
  Compose nor the ExecuTorch AAR is compiled and run by test_demo_kotlin.py.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


KOTLIN = sorted(ANDROID.rglob("*.kt")) + sorted(ANDROID.rglob("*.kts"))
SWIFT = sorted(IOS.rglob("*.swift"))
XML = sorted(p for p in ANDROID.rglob("*.xml") if "build" not in p.parts)


def _parser(lang: str):
    import tree_sitter as ts

    module = __import__(f"tree_sitter_{lang}")
    return ts.Parser(ts.Language(module.language()))


def syntax_errors(parser, source: bytes, name: str) -> list[str]:
    """file:line:col for every ERROR or MISSING node (tree-sitter recovers and keeps parsing)."""
    found = []

    def walk(node):
        if node.is_error or node.is_missing:
            line, col = node.start_point
            what = f"missing {node.type}" if node.is_missing else "syntax error"
            near = source[node.start_byte : node.start_byte + 40].decode(errors="replace").split("\n")[0]
            found.append(f"{name}:{line + 1}:{col + 1}: {what} near {near!r}")
            return
        if node.has_error:
            for child in node.children:
                walk(child)

    walk(parser.parse(source).root_node)
    return found


def test_demo_sources_exist():
    assert len(KOTLIN) >= 8 and len(SWIFT) >= 7 and XML, (len(KOTLIN), len(SWIFT), len(XML))


@pytest.mark.parametrize("path", KOTLIN, ids=_rel)
def test_kotlin_parses(path):
    errors = syntax_errors(_parser("kotlin"), path.read_bytes(), _rel(path))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", SWIFT, ids=_rel)
def test_swift_parses(path):
    errors = syntax_errors(_parser("swift"), path.read_bytes(), _rel(path))
    assert not errors, "\n".join(errors)


def test_the_check_catches_broken_code():
    kt = syntax_errors(_parser("kotlin"), b"fun ok() = 1\nfun broken( {\n  val x = \n}\n", "a.kt")
    swift = syntax_errors(_parser("swift"), b"let ok = 1\nfunc broken( {\n  let = 2\n", "a.swift")
    assert kt and kt[0].startswith("a.kt:2:"), kt
    assert swift and swift[0].startswith("a.swift:2:"), swift


@pytest.mark.parametrize("path", XML, ids=_rel)
def test_xml_parses(path):
    ET.parse(path)


def test_android_build_pins():
    app = (ANDROID / "app/build.gradle.kts").read_text()
    assert "minSdk = 26" in app and 'abiFilters += listOf("arm64-v8a")' in app
    assert 'path = file("src/main/cpp/CMakeLists.txt")' in app
    # The AAR's runtime must read what the Python exporter wrote: the same ExecuTorch release.
    pinned = re.search(r'"executorch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f'"org.pytorch:executorch-android:{pinned}"' in app
    assert 'register("copyCompkitArtifacts")' in app
    manifest = ET.parse(ANDROID / "app/src/main/AndroidManifest.xml").getroot()
    ns = "{http://schemas.android.com/apk/res/android}"
    assert manifest.find("application/activity").get(ns + "name") == ".MainActivity"


def test_ios_project_points_at_real_files():
    import yaml

    spec = yaml.safe_load((IOS / "project.yml").read_text())
    assert spec["options"]["deploymentTarget"]["iOS"] == "17.0"
    fetched = (IOS / "fetch_deps.sh").read_text()
    for name, target in spec["targets"].items():
        for src in target.get("sources", []):
            path = src if isinstance(src, str) else src["path"]
            if path.startswith("ThirdParty/"):  # written by fetch_deps.sh
                assert path.split("/")[-1] in fetched, f"fetch_deps.sh does not provide {path}"
                continue
            optional = isinstance(src, dict) and src.get("optional")
            assert optional or (IOS / path).exists(), f"project.yml target {name}: {path} does not exist"
    modulemap = (IOS / "CompkitCore/module.modulemap").read_text()
    header = re.search(r'header "([^"]+)"', modulemap).group(1)
    assert (IOS / "CompkitCore" / header).resolve() == (ROOT / "runtime_cpp/include/compkit.h")


def test_evo_sample_fits_the_default_evocomp():
    """The bundled sample must match the trained default (what export.build exports without a checkpoint)."""
    from compressors.evo import default_evo

    d = ANDROID / "app/src/main/assets/evo_sample"
    meta, cfg = json.loads((d / "evo_sample.json").read_text()), default_evo().config
    assert (meta["visual_dim"], meta["text_dim"], meta["text_tokens"], tuple(meta["grid"])) == \
        (cfg.visual_dim, cfg.text_dim, cfg.max_text_tokens, cfg.grid), "rerun android_demo/tools/make_evo_sample.py"
    n = meta["grid"][0] * meta["grid"][1]
    assert (d / "evo_sample.bin").stat().st_size == 4 * (n * meta["visual_dim"] + meta["text_tokens"] * (meta["text_dim"] + 1))
    mask = np.frombuffer((d / "evo_sample.bin").read_bytes()[-4 * meta["text_tokens"]:], "<i4")
    assert set(mask.tolist()) == {0, 1} and mask.sum() == meta["real_text_tokens"]
    import matplotlib.image

    assert matplotlib.image.imread(d / meta["image"]).shape[:2] == (meta["grid"][0] * meta["patch_px"], meta["grid"][1] * meta["patch_px"])


def _fake_build(root: Path, target: str, moos_enabled: bool = True, **manifest_fields) -> Path:
    """A build folder laid out as docs/ARTIFACTS.md says (tiny stand-in files: only the copying is tested)."""
    root.mkdir()
    (root / "moos_tokenizer").mkdir()
    (root / "moos_tokenizer/tokenizer.json").write_text("{}")
    (root / "moos_coreml_fp16_128.mlpackage/Data").mkdir(parents=True)
    (root / "moos_coreml_fp16_128.mlpackage/Manifest.json").write_text("{}")
    for name in ("moos_etcoreml_fp16_128.pte", "evo_coreml_fp16.mlpackage", "moos_xnnpack_fp32_128.pte", "vectors.json"):
        (root / name).write_text("x")
    arts = [{"file": "moos_coreml_fp16_128.mlpackage", "model": "moos", "backend": "coreml", "quant": "fp16", "enabled": moos_enabled},
            {"file": "moos_etcoreml_fp16_128.pte", "model": "moos", "backend": "etcoreml", "quant": "fp16", "enabled": moos_enabled},
            {"file": "evo_coreml_fp16.mlpackage", "model": "evo", "backend": "coreml", "quant": "fp16", "enabled": False},
            {"file": "moos_xnnpack_fp32_128.pte", "model": "moos", "backend": "xnnpack", "quant": "fp32", "enabled": True}]
    (root / "manifest.json").write_text(json.dumps({"schema": 1, "target": target, "artifacts": arts, **manifest_fields}))
    return root


def test_ios_copy_artifacts(tmp_path):
    def run(build, dest):
        return subprocess.run([sys.executable, str(IOS / "copy_artifacts.py"), str(build), "--dest", str(dest)],
                              capture_output=True, text=True)

    dest = tmp_path / "Artifacts"
    r = run(_fake_build(tmp_path / "ios", "ios"), dest)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "moos_coreml_fp16_128.mlpackage",
                                                      "moos_etcoreml_fp16_128.pte", "moos_tokenizer", "vectors.json"]
    assert (dest / "moos_coreml_fp16_128.mlpackage/Manifest.json").is_file()
    for build, why in [(_fake_build(tmp_path / "android", "android"), "not ios"), (tmp_path / "nowhere", "no manifest.json"),
                       (_fake_build(tmp_path / "off", "ios", moos_enabled=False), "no enabled MOOSComp"),
                       (_fake_build(tmp_path / "cut", "ios", complete=False, stopped="SIGTERM after 1/4 artifacts"),
                        "is marked incomplete (it was SIGTERM after 1/4 artifacts)")]:
        r = run(build, dest)
        assert r.returncode != 0 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert (dest / "moos_coreml_fp16_128.mlpackage").is_dir()  # a failed copy leaves the last good one alone
