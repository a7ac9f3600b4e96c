"""The Android demo's Kotlin, compiled by the real Kotlin compiler and run on this machine's JVM.

- Every app file that imports neither the Android SDK, Compose, coroutines nor the ExecuTorch AAR is compiled
  by kotlinc-jvm with warnings as errors (tests/host_jvm.py): at least CompkitNative.kt, EvoSample.kt and
  Artifacts.kt. Their JSON calls run on AOSP's org.json, the implementation android.jar ships.
- The JNI glue (android_demo/app/src/main/cpp) is built with the app's own CMakeLists.txt against the host JDK
  and runtime_cpp; tests/kotlin_host/HostDriver.kt drives the compiled app classes (MoosCompressor,
  CompkitNative, MoosResult, CompkitException) through System.loadLibrary with -Xcheck:jni: compressed
  texts must equal the Python reference's, fed the same model outputs.
- The compiled classes' native methods (javap) and the library's exported symbols agree.
- EvoSample.parse reads the bundled sample exactly; Artifacts reads a manifest laid out as export.build writes it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import host_jvm

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "android_demo"
APP_SRC = ANDROID / "app/src/main/java"
GLUE_DIR = ANDROID / "app/src/main/cpp"
SAMPLE_DIR = ANDROID / "app/src/main/assets/evo_sample"
DRIVER = Path(__file__).resolve().parent / "kotlin_host/HostDriver.kt"
# What a file importing any of these needs: the Android SDK, Compose / AndroidX, coroutines, the ExecuTorch AAR.
PLATFORM_IMPORTS = ("android.", "androidx.", "kotlinx.coroutines.", "org.pytorch.")


def host_kotlin_files() -> list[Path]:
    """The app's Kotlin files that import nothing from PLATFORM_IMPORTS."""
    def platform(p: Path) -> bool:
        return any(i.startswith(PLATFORM_IMPORTS) for i in re.findall(r"^import\s+([\w.]+)", p.read_text(), re.M))

    return [p for p in sorted(APP_SRC.rglob("*.kt")) if not platform(p)]


def test_the_plain_kotlin_is_split_from_the_platform_code():
    names = {p.name for p in host_kotlin_files()}
    assert {"CompkitNative.kt", "EvoSample.kt", "Artifacts.kt"} <= names, names


@pytest.fixture(scope="module")
def app_classes() -> Path:
    return host_jvm.compile_kotlin(host_kotlin_files(), [host_jvm.android_json()], "app")


@pytest.fixture(scope="module")
def classpath(app_classes) -> str:
    driver = host_jvm.compile_kotlin([DRIVER], [app_classes, host_jvm.android_json()], "driver")
    return os.pathsep.join(map(str, [driver, app_classes, host_jvm.android_json(), host_jvm.kotlin_stdlib()]))


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        pytest.fail(f"{name} not found: it comes with the project's Python packages (make test installs them)")
    return found


@pytest.fixture(scope="module")
def jni_lib() -> Path:
    """libcompkit_jni.so from the app's CMakeLists.txt, cached by a hash of every input file."""
    jdk = host_jvm.jdk_home()
    if not (ROOT / "runtime_cpp/include/compkit.h").is_file():
        pytest.skip("runtime_cpp is not in this checkout")
    inputs = sorted((ROOT / "runtime_cpp").glob("src/*")) + [ROOT / "runtime_cpp/include/compkit.h"]
    inputs += sorted(GLUE_DIR.iterdir())
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in inputs if p.is_file())).hexdigest()[:16]
    out = ROOT / "build/jni_host" / digest
    lib = out / "libcompkit_jni.so"
    if lib.is_file():
        return lib
    work = out.with_name(f"{digest}.tmp-{os.getpid()}")  # parallel test workers build side by side
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, JAVA_HOME=str(jdk))
    configure = [_tool("cmake"), "-S", str(GLUE_DIR), "-B", str(work), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CXX_FLAGS_RELEASE=-O1"]
    for cmd in (configure, [_tool("cmake"), "--build", str(work), "-j", "2"]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    work.joinpath("libcompkit_jni.so").replace(work / "keep.so")
    out.mkdir(parents=True, exist_ok=True)
    (work / "keep.so").replace(lib)  # atomic: a worker that built the same digest meanwhile wrote the same bytes
    shutil.rmtree(work, ignore_errors=True)
    return lib


def run_driver(classpath: str, *args, lib: Path | None = None) -> subprocess.CompletedProcess:
    """HostDriver on the host JVM, with -Xcheck:jni; any JNI misuse it reports fails the test."""
    cmd = [host_jvm.jdk_tool("java"), "-Xcheck:jni", "-cp", classpath]
    if lib is not None:
        cmd.insert(1, f"-Djava.library.path={lib.parent}")
    r = subprocess.run([*cmd, "org.compkit.demo.host.HostDriverKt", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]  # -Xcheck:jni's complaints
    return r


def javap(classes: Path, name: str) -> str:
    return subprocess.run([host_jvm.jdk_tool("javap"), "-s", "-p", "-cp", str(classes), name], capture_output=True,
                          text=True, check=True).stdout


def test_compiled_kotlin_and_library_agree(jni_lib, app_classes):
    natives = dict(re.findall(r" native \S+ (\w+)\(.*\);\n\s+descriptor: (\S+)", javap(app_classes, "org.compkit.demo.CompkitNative")))
    assert set(natives) == {"moosCreate", "moosCompress", "moosDestroy", "evoSelect"}, natives
    r = subprocess.run(["nm", "-D", "--defined-only", str(jni_lib)], capture_output=True, text=True, check=True)
    assert set(re.findall(r"Java_org_compkit_demo_CompkitNative_(\w+)", r.stdout)) == set(natives)
    # JNI short names carry no signature: the glue's own descriptors are checked against the compiled classes
    glue = (GLUE_DIR / "compkit_jni.cpp").read_text()
    ctor = re.search(r"public org\.compkit\.demo\.MoosResult\(.*\);\n\s+descriptor: (\S+)", javap(app_classes, "org.compkit.demo.MoosResult"))
    assert f'"<init>", "{ctor.group(1)}"' in glue, "the glue's MoosResult constructor descriptor differs from Kotlin's"
    score = re.search(r" score\(.*\);\n\s+descriptor: (\S+)", javap(app_classes, "org.compkit.demo.MoosScorer"))
    assert f'"score", "{score.group(1)}"' in glue, "the glue calls MoosScorer.score with another descriptor"
    assert 'FindClass("org/compkit/demo/CompkitException")' in glue
    assert (app_classes / "org/compkit/demo/CompkitException.class").is_file()


# ------------------------------------------------------------------ MOOSComp through the JNI glue
TEXTS = [
    "Item 15: the city council approved 2.4 million dollars for the Riverside bridge repair. Council member "
    "Alvarez said the work must finish before the flood season.\nThe vote was 7 to 2.",
    "Café naïve résumé — déjà vu. 東京は日本の首都です。 Emoji test 🚀🔥 and code: `for i in range(10): print(i)`.",
    "New York is big. New York is busy. e.g. this, e.g. that... New York! . . . , , , ? ! . . .",
]

# The compress_prompt options the JNI surface carries (moosCompress's arguments), as compressors/vectors.py varies them.
OPTIONS = [{"rate": 0.33}, {"rate": 0.6}, {"rate": 0.5, "target_token": 20},
           {"rate": 0.33, "force_tokens": ["\n", ".", "New York", "Café"]},
           {"rate": 0.33, "force_tokens": ["\n", ".", "New York", "Café"], "drop_consecutive": True},
           {"rate": 0.5, "force_reserve_digit": True, "token_to_word": "first"}]


def _reference_cases(tmp: Path) -> tuple[Path, list[dict], list[dict]]:
    """Python's compressions of TEXTS, and every window its model scored (ids, keep_prob, outlier_z)."""
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
            keys = [tuple(ids[row, : int(mask[row].sum())].tolist()) for row in range(ids.shape[0])]
            if not all(k in windows for k in keys):
                out = self.inner(ids, mask)
                for row, k in enumerate(keys):
                    windows[k] = (out["keep_prob"][row, : len(k)], out["outlier_z"][row, : len(k)])
            keep, z = np.zeros(ids.shape, np.float32), np.zeros(ids.shape, np.float32)
            for row, k in enumerate(keys):
                keep[row, : len(k)], z[row, : len(k)] = windows[k]
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
    table = [{"ids": list(k), "keep_prob": np.asarray(keep, np.float32).tolist(), "outlier_z": np.asarray(z, np.float32).tolist()}
             for k, (keep, z) in windows.items()]
    return tmp / "tok", cases, table


def _driver_case(c: dict) -> dict:
    o = c["options"]
    return {"weight": c["weight"], "text": c["text"], "rate": o["rate"], "target_token": o.get("target_token", -1),
            "force_tokens": o.get("force_tokens", []), "force_reserve_digit": o.get("force_reserve_digit", False),
            "drop_consecutive": o.get("drop_consecutive", False), "token_to_word_first": o.get("token_to_word") == "first"}


@pytest.mark.slow  # the Python reference's 48 compressions and one JVM: ~40 s at load average 12
def test_kotlin_compressor_reproduces_python(jni_lib, classpath, tmp_path):
    tok, cases, table = _reference_cases(tmp_path)
    assert len(cases) == 48
    (tmp_path / "in.json").write_text(json.dumps({"windows": table, "cases": [_driver_case(c) for c in cases]}))
    run_driver(classpath, "replay", tok, tmp_path / "in.json", tmp_path / "out.json", lib=jni_lib)
    out = json.loads((tmp_path / "out.json").read_text())
    for case, got in zip(cases, out["results"], strict=True):
        assert "error" not in got, got.get("error")
        assert got["compressed"] == case["compressed"], (case["weight"], case["options"], case["text"][:40])
        assert (got["origin"], got["tokens"]) == (case["origin"], case["tokens"])
        assert got["windows"] >= 1 and got["words"] == len(got["kept"]) and set(got["kept"]) <= {"0", "1"} and "0" in got["kept"]
        assert list(got["stages"]) == ["tokenize", "forward", "postprocess", "total"] and got["stages"]["total"] > 0

    # the cases have teeth: every option changes some Python output, so a glue that drops one fails above
    by_options = {}
    for c in cases:
        by_options.setdefault(json.dumps(c["options"], sort_keys=True), []).append(c["compressed"])
    outputs = list(by_options.values())
    assert all(sum(a != b for a, b in zip(outputs[i], outputs[j])) for i in range(len(outputs)) for j in range(i))
    assert any(c["compressed"] != d["compressed"] for c, d in zip(cases[: len(cases) // 2], cases[len(cases) // 2 :]))

    probes = out["probes"]
    for probe, words in [("empty", "empty"), ("bad_rate", "rate"), ("missing_tokenizer", "tokenizer")]:
        assert probes[probe]["kind"] == "CompkitException" and words in probes[probe]["value"].lower(), (probe, probes[probe])
    # the Kotlin scorer's exception reaches the caller as a CompkitException
    assert probes["unrecorded"]["kind"] == "CompkitException" and "never scored by Python" in probes["unrecorded"]["value"]
    from compressors.evo import select  # the Python reference, ties and rounding included

    assert probes["evo_tie"] == {"kind": "OK", "value": select(np.array([0.5, 1, 1, 1, 0], np.float32), ratio=2.5).tolist()}
    assert probes["evo_k"] == {"kind": "OK", "value": select(np.array([3, 1, 2, 5], np.float32), k=2).tolist()}
    assert probes["evo_nan"]["kind"] == "CompkitException"
    # MoosCompressor's lifetime: use after close() is refused, a second close() and a null handle are no-ops
    assert probes["after_close"]["kind"] == "IllegalStateException" and "after close" in probes["after_close"]["value"]
    assert probes["close_twice"]["kind"] == probes["destroy_null"]["kind"] == "OK"
    lengths = out["window_lengths"]
    assert all(b in (128, 256, 512) and n <= b for b, n in lengths)  # windows arrive padded to a bucket
    assert any(b > 128 for b, _ in lengths) and any(b - n > 0 for b, n in lengths)


# ------------------------------------------------------------------ EvoSample and Artifacts
def _build_dir(root: Path, artifacts: list[dict], evo_config: dict) -> Path:
    """A build folder's manifest.json shaped as export.build writes it (models.*, artifacts[] entries)."""
    from export.targets import artifact_name

    root.mkdir()
    for a in artifacts:
        a.setdefault("file", artifact_name(a["model"], a["backend"], a["quant"], a["bucket"]))
        a.setdefault("enabled", True)
    models = {"moos": {"tokenizer_dir": "moos_tokenizer", "buckets": [128, 256, 512]},
              "evo": {"config": evo_config, "visual_tokens": evo_config["max_visual_tokens"]}}
    (root / "manifest.json").write_text(json.dumps({"schema": 1, "target": "android", "models": models, "artifacts": artifacts}))
    return root


def _moos(quant, bucket, enabled=True, outputs=("keep_prob", "outlier_z"), backend="xnnpack"):
    return {"model": "moos", "backend": backend, "quant": quant, "bucket": bucket, "enabled": enabled,
            "output_names": list(outputs)}


def _evo(quant, enabled=True, backend="xnnpack"):
    return {"model": "evo", "backend": backend, "quant": quant, "bucket": None, "enabled": enabled,
            "output_names": ["keep_logits"]}


def test_kotlin_evo_sample_reads_the_bundled_files(classpath, tmp_path):
    """EvoSample.parse gives back the bundled bytes exactly; checkFits accepts the shipped default_evo()'s config
    (what export.build writes into the manifest) and names each size that differs, the way VisionScreen calls it."""
    from compressors.evo import default_evo

    default = dataclasses.asdict(default_evo().config)
    keys = ["visual_dim", "text_dim", "max_visual_tokens", "max_text_tokens"]
    builds = [_build_dir(tmp_path / "default", [], default)]
    builds += [_build_dir(tmp_path / key, [], dict(default, **{key: default[key] + 8})) for key in keys]
    run_driver(classpath, "evo-sample", SAMPLE_DIR, tmp_path / "parsed", *builds)
    got = json.loads((tmp_path / "parsed.json").read_text())
    meta = json.loads((SAMPLE_DIR / "evo_sample.json").read_text())
    assert (tmp_path / "parsed.bin").read_bytes() == (SAMPLE_DIR / "evo_sample.bin").read_bytes()
    assert (got["question"], got["image"], [got["rows"], got["cols"]]) == (meta["question"], meta["image"], meta["grid"])
    assert (got["visual_dim"], got["text_dim"], got["text_tokens"]) == (meta["visual_dim"], meta["text_dim"], meta["text_tokens"])
    assert got["fits"][0]["kind"] == "OK", got["fits"][0]
    for key, fit in zip(keys, got["fits"][1:], strict=True):
        assert fit["kind"] == "CompkitException" and f"({key})" in fit["value"] and "make_evo_sample.py" in fit["value"], fit
    assert got["truncated"]["kind"] == "CompkitException" and "bytes" in got["truncated"]["value"]


def test_kotlin_artifacts_reads_a_manifest(classpath, tmp_path):
    from compressors.evo import EvoCompConfig

    cfg = dataclasses.asdict(EvoCompConfig())
    all_quants = [_moos(q, b) for q in ("fp32", "int8dyn", "int8static") for b in (128, 256, 512)]
    builds = [
        _build_dir(tmp_path / "all", all_quants + [_moos("fp16", 128, backend="etcoreml"), _evo("fp32"), _evo("int8dyn")], cfg),
        # int8dyn disabled (a failed export): the app falls back to fp32; no outlier_z output, no EvoComp
        _build_dir(tmp_path / "fallback", [dict(a, enabled=a["quant"] != "int8dyn", output_names=["keep_prob"]) for a in all_quants]
                   + [_evo("fp32", enabled=False)], cfg),
        _build_dir(tmp_path / "none", [_moos("fp16", 128, backend="coreml")], cfg),
        tmp_path / "nowhere",
    ]
    run_driver(classpath, "manifest", tmp_path / "out.json", *builds)
    full, fallback, none, nowhere = json.loads((tmp_path / "out.json").read_text())
    from export.targets import artifact_name

    assert full["moos_ptes"]["value"] == {str(b): artifact_name("moos", "xnnpack", "int8dyn", b) for b in (128, 256, 512)}
    assert full["evo_pte"]["value"] == artifact_name("evo", "xnnpack", "int8dyn", None)
    assert (full["moos_quants"], full["evo_quants"]) == (["fp32", "int8dyn", "int8static"], ["fp32", "int8dyn"])
    assert full["has_outlier"] and full["tokenizer_dir"] == "moos_tokenizer"
    assert fallback["moos_ptes"]["value"] == {str(b): artifact_name("moos", "xnnpack", "fp32", b) for b in (128, 256, 512)}
    assert not fallback["has_outlier"] and fallback["evo_quants"] == []
    assert fallback["evo_pte"]["kind"] == "CompkitException" and "EvoComp" in fallback["evo_pte"]["value"]
    assert none["moos_ptes"]["kind"] == "CompkitException" and "--target android" in none["moos_ptes"]["value"]
    assert nowhere["read"]["kind"] == "CompkitException" and "manifest.json" in nowhere["read"]["value"]
