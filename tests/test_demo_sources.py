"""The demo apps' sources, checked on a machine with no Android SDK/NDK, Gradle, Xcode or Swift compiler.

- Every Kotlin (.kt, .kts) and Swift file parses with a real grammar (tree-sitter); any ERROR or MISSING
  node fails, naming file, line and column. Every XML file parses; project.yml loads and points at files
  that exist.
- The JNI glue (android_demo/app/src/main/cpp) is built here with the app's own CMakeLists.txt against
  the host JDK and runtime_cpp, and driven from Java through System.loadLibrary by a harness that mirrors
  the Kotlin classes: compressed texts must equal the Python reference's, fed the same model outputs.
- The Kotlin `external fun` declarations, the Java mirror and the symbols the library exports agree.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"
GLUE_DIR = ANDROID / "app/src/main/cpp"
HARNESS = Path(__file__).resolve().parent / "jni_harness"
KOTLIN_NATIVE = ANDROID / "app/src/main/java/org/compkit/demo/CompkitNative.kt"


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


def _fake_build(root: Path, target: str, moos_enabled: bool = True) -> Path:
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
    (root / "manifest.json").write_text(json.dumps({"schema": 1, "target": target, "artifacts": arts}))
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
                       (_fake_build(tmp_path / "off", "ios", moos_enabled=False), "no enabled MOOSComp")]:
        r = run(build, dest)
        assert r.returncode != 0 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert (dest / "moos_coreml_fp16_128.mlpackage").is_dir()  # a failed copy leaves the last good one alone


# ------------------------------------------------------------------ the JNI glue, built and run here
def _jdk_home() -> Path | None:
    javac = shutil.which("javac")
    return Path(os.path.realpath(javac)).parents[1] if javac else None


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        pytest.skip(f"{name} not found")
    return found


@pytest.fixture(scope="module")
def jni_lib() -> Path:
    """libcompkit_jni.so from the app's CMakeLists.txt, cached by a hash of every input file."""
    jdk = _jdk_home()
    if jdk is None or not (jdk / "include/jni.h").is_file():
        pytest.skip("no JDK with jni.h (Debian: apt-get install openjdk-17-jdk-headless)")
    if not (ROOT / "runtime_cpp/include/compkit.h").is_file():
        pytest.skip("runtime_cpp is not in this checkout")
    inputs = sorted((ROOT / "runtime_cpp").glob("src/*")) + [ROOT / "runtime_cpp/include/compkit.h"]
    inputs += sorted(GLUE_DIR.iterdir())
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in inputs if p.is_file())).hexdigest()[:16]
    out = ROOT / "build/jni_host" / digest
    lib = out / "libcompkit_jni.so"
    if lib.is_file():
        return lib
    work = out.with_name(digest + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, JAVA_HOME=str(jdk))
    configure = [_tool("cmake"), "-S", str(GLUE_DIR), "-B", str(work), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CXX_FLAGS_RELEASE=-O1"]
    for cmd in (configure, [_tool("cmake"), "--build", str(work), "-j", "2"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    work.joinpath("libcompkit_jni.so").replace(work / "keep.so")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (work / "keep.so").replace(lib)
    shutil.rmtree(work, ignore_errors=True)
    return lib


@pytest.fixture(scope="module")
def harness_classes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("classes")
    sources = sorted(str(p) for p in HARNESS.rglob("*.java"))
    r = subprocess.run([_tool("javac"), "-d", str(out), *sources], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


_JNI_TYPES = {"String": "Ljava/lang/String;", "Int": "I", "Float": "F", "Double": "D", "Boolean": "Z", "Long": "J",
              "Unit": "V", "IntArray": "[I", "FloatArray": "[F", "MoosScorer": "Lorg/compkit/demo/MoosScorer;",
              "MoosResult": "Lorg/compkit/demo/MoosResult;", "Array<String>": "[Ljava/lang/String;",
              "BooleanArray": "[Z", "DoubleArray": "[D"}


def kotlin_externals() -> dict[str, str]:
    """name -> JNI descriptor of every `external fun` in CompkitNative.kt, read from the Kotlin syntax tree."""
    source = KOTLIN_NATIVE.read_bytes()
    tree = _parser("kotlin").parse(source)
    text = lambda n: source[n.start_byte : n.end_byte].decode()  # noqa: E731
    found = {}

    def walk(node):
        if node.type == "function_declaration" and "external" in text(node).split("fun")[0]:
            name = next(text(c) for c in node.children if c.type in ("simple_identifier", "identifier"))
            params = next(c for c in node.children if c.type == "function_value_parameters")
            types = [text(p.child_by_field_name("type") or p.children[-1]).strip() for p in params.children
                     if p.type == "parameter"]
            ret = node.children[[c.type for c in node.children].index("function_value_parameters") + 2:]
            ret_type = text(ret[0]).strip() if ret and ret[0].type in ("user_type", "type") else "Unit"
            found[name] = "(" + "".join(_JNI_TYPES[t] for t in types) + ")" + _JNI_TYPES[ret_type]
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return found


def test_kotlin_java_and_library_agree(jni_lib, harness_classes):
    kotlin = kotlin_externals()
    assert set(kotlin) == {"moosCreate", "moosCompress", "moosDestroy", "evoSelect"}, kotlin
    r = subprocess.run([_tool("javap"), "-s", "-cp", str(harness_classes), "org.compkit.demo.CompkitNative"],
                       capture_output=True, text=True, check=True)
    java = dict(re.findall(r"native \S+ (\w+)\(.*\);\n\s+descriptor: (\S+)", r.stdout))
    assert java == kotlin
    r = subprocess.run(["nm", "-D", "--defined-only", str(jni_lib)], capture_output=True, text=True, check=True)
    exported = set(re.findall(r"Java_org_compkit_demo_CompkitNative_(\w+)", r.stdout))
    assert exported == set(kotlin)
    kt_result = (ANDROID / "app/src/main/java/org/compkit/demo/CompkitNative.kt").read_text()
    fields = re.search(r"class MoosResult\((.*?)\n\)", kt_result, re.S).group(1)
    kt_types = [_JNI_TYPES[t] for t in re.findall(r"val \w+: ([\w<>]+)", fields)]
    glue = (GLUE_DIR / "compkit_jni.cpp").read_text()
    assert '"(' + "".join(kt_types) + ')V"' in glue, "the glue's MoosResult constructor descriptor differs from Kotlin's"


TEXTS = [
    "Item 15: the city council approved 2.4 million dollars for the Riverside bridge repair. Council member "
    "Alvarez said the work must finish before the flood season.\nThe vote was 7 to 2.",
    "Café naïve résumé — déjà vu. 東京は日本の首都です。 Emoji test 🚀🔥 and code: `for i in range(10): print(i)`.",
    "New York is big. New York is busy. e.g. this, e.g. that... New York! . . . , , , ? ! . . .",
]


# The compress_prompt options the JNI surface carries (moosCompress's arguments), as export/vectors.py varies them.
OPTIONS = [{"rate": 0.33}, {"rate": 0.6}, {"rate": 0.5, "target_token": 20},
           {"rate": 0.33, "force_tokens": ["\n", ".", "New York", "Café"]},
           {"rate": 0.33, "force_tokens": ["\n", ".", "New York", "Café"], "drop_consecutive": True},
           {"rate": 0.5, "force_reserve_digit": True, "token_to_word": "first"}]


def _case_line(c: dict) -> str:
    o = c["options"]
    b64 = lambda t: base64.b64encode(t.encode()).decode()  # noqa: E731
    flags = [int(o.get("force_reserve_digit", False)), int(o.get("drop_consecutive", False)), int(o.get("token_to_word") == "first")]
    fields = [c["weight"], o["rate"], o.get("target_token", -1), b64("\x01".join(o.get("force_tokens", [])))] + flags
    return "\t".join(map(str, fields + [b64(c["text"])])) + "\n"


def _reference_cases(tmp: Path) -> tuple[Path, list[dict]]:
    """Python's compressions of TEXTS plus every window its model scored (ids, keep_prob, outlier_z)."""
    from compressors.moos import MOOSCompressor

    base = MOOSCompressor.from_default()
    base.tokenizer.save_pretrained(tmp / "tok")
    windows = {}

    class Recording:
        """Runs the model once per distinct window and remembers what it said (the replay table)."""

        seq_lens = None

        def __init__(self, inner):
            self.inner = inner

        def __call__(self, ids, mask):
            keys = [",".join(map(str, ids[row, : int(mask[row].sum())])) for row in range(ids.shape[0])]
            if not all(k in windows for k in keys):
                out = self.inner(ids, mask)
                for row, k in enumerate(keys):
                    n = int(mask[row].sum())
                    windows[k] = (out["keep_prob"][row, :n], out["outlier_z"][row, :n])
            keep, z = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, np.float32)
            for row, k in enumerate(keys):
                keep[row, : len(windows[k][0])], z[row, : len(windows[k][1])] = windows[k]
            return {"keep_prob": keep, "outlier_z": z}

    cases = []
    for weight in (0.0, 0.5):
        # outlier_weight only changes post-processing: one model serves both, through the same replay table
        c = MOOSCompressor(base.tokenizer, Recording(base.scorer), outlier_weight=weight, torch_module=base.torch_module)
        for text in TEXTS + [" ".join(TEXTS) * 6]:  # the last needs several 512-token windows
            for options in OPTIONS:
                r = c.compress_prompt(text, **options)
                cases.append({"weight": weight, "text": text, "options": options, "compressed": r["compressed_prompt"],
                              "origin": r["origin_tokens"], "tokens": r["compressed_tokens"]})
    lines = [f"{k}\t{','.join(map(str, keep))}\t{','.join(map(str, z))}" for k, (keep, z) in windows.items()]
    (tmp / "windows.tsv").write_text("\n".join(lines) + "\n")
    return tmp / "tok", cases


def test_jni_glue_reproduces_python(jni_lib, harness_classes, tmp_path):
    tok, cases = _reference_cases(tmp_path)
    (tmp_path / "cases.tsv").write_text("".join(map(_case_line, cases)))
    r = subprocess.run([_tool("java"), f"-Djava.library.path={jni_lib.parent}", "-Xcheck:jni", "-cp", str(harness_classes),
                        "org.compkit.demo.ReplayHarness", str(tok), str(tmp_path / "windows.tsv"),
                        str(tmp_path / "cases.tsv"), str(tmp_path / "out.tsv")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = (tmp_path / "out.tsv").read_text().splitlines()
    results, probes = lines[: len(cases)], dict(line.split("\t", 1) for line in lines[len(cases):])
    for case, line in zip(cases, results):
        f = line.split("\t")
        assert f[0] != "ERROR", base64.b64decode(f[1]).decode()
        assert base64.b64decode(f[0]).decode() == case["compressed"], (case["weight"], case["options"], case["text"][:40])
        assert (int(f[2]), int(f[3])) == (case["origin"], case["tokens"])
        assert int(f[4]) >= 1 and set(f[1]) <= {"0", "1"} and "0" in f[1]
        stages = dict(s.split("=") for s in f[5].split(","))
        assert list(stages) == ["tokenize", "forward", "postprocess", "total"] and float(stages["total"]) > 0

    # the cases have teeth: every option changes some Python output, so a glue that drops one fails above
    by_options = {}
    for c in cases:
        by_options.setdefault(json.dumps(c["options"], sort_keys=True), []).append(c["compressed"])
    outputs = list(by_options.values())
    assert all(sum(a != b for a, b in zip(outputs[i], outputs[j])) for i in range(len(outputs)) for j in range(i))
    assert any(c["compressed"] != d["compressed"] for c, d in zip(cases[: len(cases) // 2], cases[len(cases) // 2 :]))

    def message(probe):
        kind, _, payload = probes[probe].partition(" ")
        return kind, base64.b64decode(payload).decode() if kind != "OK" else payload

    for probe, words in [("PROBE empty", "empty"), ("PROBE bad_rate", "rate"), ("PROBE missing_tokenizer", "tokenizer")]:
        kind, text = message(probe)
        assert kind == "CompkitException" and words in text.lower(), (probe, text)
    kind, text = message("PROBE unrecorded")  # the Kotlin scorer's exception reaches the caller as a CompkitException
    assert kind == "CompkitException" and "never scored by Python" in text, text
    from compressors.evo import select  # the Python reference, ties and rounding included

    assert probes["PROBE evo_tie"] == str(select(np.array([0.5, 1, 1, 1, 0], np.float32), ratio=2.5).tolist())
    assert probes["PROBE evo_k"] == str(select(np.array([3, 1, 2, 5], np.float32), k=2).tolist())
    assert message("PROBE evo_nan")[0] == "CompkitException"
    lengths = [tuple(map(int, s.split(":"))) for s in probes["PROBE window_lengths"].split(",")]
    assert all(b in (128, 256, 512) and n <= b for b, n in lengths)  # windows arrive padded to a bucket
    assert any(b > 128 for b, _ in lengths) and any(b - n > 0 for b, n in lengths)
