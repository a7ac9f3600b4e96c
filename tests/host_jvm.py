"""The JVM tools the Android demo's host tests use, found where `make test` installs them, and a cached kotlinc.

make test installs a JDK and AOSP's org.json (Debian: openjdk-17-jdk-headless, libandroid-json-java) and the
Kotlin compiler (android_demo/tools/kotlinc.sh: npm's kotlin-compiler, into a cache folder). A missing tool is
a failure that says how to install it, never a skip: all of them can be had on this machine.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KOTLINC_SH = ROOT / "android_demo/tools/kotlinc.sh"
# AOSP's org.json (android-10.0.0_r36), the implementation android.jar ships: the app's JSON calls run on it here.
ANDROID_JSON = Path("/usr/share/java/com.android.json.jar")
# The app's Gradle build uses Kotlin 2.0.21: the newer compiler checks the code at that language and API level,
# so a construct or stdlib call 2.0 lacks fails here too. -Werror: a warning is an error; -Wextra adds the checks
# (unused variables, redundant casts, ...) the 2.x CLI leaves to the IDE by default.
KOTLINC_FLAGS = ["-Werror", "-Wextra", "-Xsuppress-version-warnings", "-language-version", "2.0", "-api-version", "2.0",
                 "-jvm-target", "17"]


def jdk_home() -> Path:
    javac = shutil.which("javac")
    home = Path(os.path.realpath(javac)).parents[1] if javac else None
    if home is None or not (home / "include/jni.h").is_file():
        pytest.fail("no JDK with jni.h: apt-get install openjdk-17-jdk-headless (make test does)")
    return home


def jdk_tool(name: str) -> str:
    return str(jdk_home() / "bin" / name)


def android_json() -> Path:
    if not ANDROID_JSON.is_file():
        pytest.fail(f"{ANDROID_JSON} missing: apt-get install libandroid-json-java (make test does)")
    return ANDROID_JSON


def kotlinc() -> Path:
    r = subprocess.run(["bash", str(KOTLINC_SH), "path"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(r.stderr.strip())
    return Path(r.stdout.strip())


def kotlin_stdlib() -> Path:
    return kotlinc().parents[1] / "lib/kotlin-stdlib.jar"


def compile_kotlin(sources: list[Path], classpath: list[Path], label: str) -> Path:
    """kotlinc-jvm with KOTLINC_FLAGS into build/kotlin_host/<label>-<hash>/, cached by a hash of the compiler,
    the flags, the classpath and every source (the first compile takes ~15-50 s on 2 shared cores)."""
    compiler = kotlinc()
    parts = [str(compiler).encode(), " ".join(KOTLINC_FLAGS).encode()]
    parts += [p.name.encode() + (p.read_bytes() if p.is_file() else hash_dir(p).encode()) for p in classpath]
    parts += [str(p.relative_to(ROOT)).encode() + p.read_bytes() for p in sources]
    out = ROOT / "build/kotlin_host" / f"{label}-{hashlib.sha256(b''.join(parts)).hexdigest()[:16]}"
    if out.is_dir():
        return out
    work = out.with_name(f"{out.name}.tmp-{os.getpid()}")  # parallel test workers compile side by side
    shutil.rmtree(work, ignore_errors=True)
    cmd = [str(compiler), *KOTLINC_FLAGS, "-cp", os.pathsep.join(map(str, classpath)), "-d", str(work), *map(str, sources)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, JAVA_HOME=str(jdk_home())), timeout=600)
    if r.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        pytest.fail(f"kotlinc-jvm {' '.join(KOTLINC_FLAGS)} failed on {label}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    try:
        work.replace(out)
    except OSError:  # another run finished the same compile first
        shutil.rmtree(work, ignore_errors=True)
    return out


def hash_dir(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(d)).encode() + p.read_bytes())
    return h.hexdigest()
