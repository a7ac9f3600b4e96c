"""A compkit_runner a phone can execute with no NDK: cross-compiled for arm64 against PyPI's aarch64 executorch
wheel with Debian's aarch64 g++, and shipped with its own glibc (docs/RUNNER.md, "A phone with no NDK").

    python -m bench_device.build_runner --abi arm64-v8a [--wheel PATH]

builds (once; cached) a bundle folder: the runner, the wheel's .so files it needs, the glibc loader and
libraries from the cross toolchain, and a launcher. Android has no /lib/ld-linux-aarch64.so.1, so the
launcher starts the runner through the bundled loader:

    sh DIR/compkit_runner.sh ARGS  ->  DIR/ld-linux-aarch64.so.1 --library-path DIR DIR/compkit_runner ARGS

The wheel is `pip download`ed for the installed executorch version (or given with --wheel /
$COMPKIT_ARM64_WHEEL); arm64 utf8proc (linked statically) and nlohmann-json come from Debian's .debs,
unpacked with dpkg-deb -x, nothing installed. The bundle is rebuilt only when the runner's sources, the
wheel, the cross compiler or the .debs change; it is assembled in a temp folder and renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from compkit.files import atomic_path, sha256_path as sha256_file
from runtime_cpp.build import BuildError, build_lock, find_tool, run_logged, source_key

from .build_runner import BINARY_NAME, CORE_SOURCE_DIR, RUNNER_SOURCE_DIR

BUILD_ROOT = Path(__file__).resolve().parent.parent / "build"
LAUNCHER_NAME = "compkit_runner.sh"
MANIFEST_NAME = "SHA256SUMS"
WHEEL_ENV = "COMPKIT_ARM64_WHEEL"
BUNDLE_FORMAT = "1"  # bump when the way a bundle is assembled changes: cached bundles are then rebuilt


@dataclass(frozen=True)
class Target:
    """One Android ABI compkit can cross-build for: the Debian cross toolchain and the wheel's platform tag."""

    abi: str
    triple: str  # Debian's gcc-<triple> and /usr/<triple>/lib
    cmake_processor: str
    wheel_platform: str
    loader: str
    debian_arch: str


TARGETS = {"arm64-v8a": Target("arm64-v8a", "aarch64-linux-gnu", "aarch64", "manylinux_2_28_aarch64",
                               "ld-linux-aarch64.so.1", "arm64")}
# glibc and the C++ runtime from the cross toolchain: libdl and libpthread are stubs since glibc 2.34,
# but the wheel's libraries still name them
SYSTEM_LIBS = ("libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "libgcc_s.so.1", "libstdc++.so.6")
DEBS = ("libutf8proc-dev", "nlohmann-json3-dev")


@dataclass(frozen=True)
class Bundle:
    """A built runner bundle: its folder, its launcher and a hash of all its files (its identity on devices)."""

    abi: str
    path: Path
    digest: str

    @property
    def launcher(self) -> Path:
        return self.path / LAUNCHER_NAME

    def files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.is_file())


def _executorch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        raise BuildError("executorch is not installed: pip install -c constraints.txt executorch==1.5.1") from None


def fetch_wheel(target: Target, downloads: Path, wheel: str | os.PathLike | None = None) -> Path:
    """The target's executorch wheel: --wheel / $COMPKIT_ARM64_WHEEL if given, else pip download (cached)."""
    given = wheel or os.environ.get(WHEEL_ENV)
    if given:
        path = Path(given).expanduser().resolve()
        if not path.is_file() or not zipfile.is_zipfile(path):
            raise BuildError(f"{path} is not a wheel file: pass the executorch {target.wheel_platform} .whl")
        return path
    version = _executorch_version()
    pattern = f"executorch-{version}-*{target.wheel_platform}.whl"
    cached = sorted(downloads.glob(pattern))
    if cached:
        return cached[0]
    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
               "--platform", target.wheel_platform, "--python-version", py, "-d", tmp, f"executorch=={version}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(Path(tmp).glob(pattern))
        if r.returncode != 0 or not got:
            reason = next((ln.strip() for ln in reversed(r.stderr.splitlines()) if ln.strip()), "no wheel")
            raise BuildError(f"cannot download executorch=={version} for {target.wheel_platform} ({reason}); "
                             f"offline? download it elsewhere (pip download --no-deps --only-binary :all: "
                             f"--platform {target.wheel_platform} --python-version {py} executorch=={version}) "
                             f"and pass --wheel PATH or set ${WHEEL_ENV}")
        os.replace(got[0], downloads / got[0].name)
    return downloads / got[0].name


def fetch_debs(target: Target, downloads: Path) -> list[Path]:
    """Debian's arm64 utf8proc and nlohmann-json .debs (apt-get download: nothing installed), cached."""
    debs = []
    for name in DEBS:
        found = sorted(downloads.glob(f"{name}_*.deb"))
        if not found:
            downloads.mkdir(parents=True, exist_ok=True)
            spec = f"{name}:{target.debian_arch}" if name != "nlohmann-json3-dev" else name  # json: arch all
            r = subprocess.run(["apt-get", "download", "-q", spec], cwd=downloads, capture_output=True, text=True)
            found = sorted(downloads.glob(f"{name}_*.deb"))
            if r.returncode != 0 or not found:
                reason = next((ln.strip() for ln in r.stderr.splitlines() if ln.startswith("E:")), r.stderr.strip())
                raise BuildError(f"cannot apt-get download {spec} ({reason}); as root run `dpkg --add-architecture "
                                 f"{target.debian_arch} && apt-get update` (make test does), or check the network")
        debs.append(found[0])
    return debs


def _cross_tools(target: Target) -> tuple[str, str]:
    cc, cxx = shutil.which(f"{target.triple}-gcc"), shutil.which(f"{target.triple}-g++")
    if not cc or not cxx:
        raise BuildError(f"cross compiler {target.triple}-g++ not found: apt-get install g++-{target.triple} "
                         f"(make test does)")
    if not shutil.which("patchelf"):
        raise BuildError("patchelf not found: apt-get install patchelf (make test does)")
    return cc, cxx


def _toolchain_file(path: Path, target: Target, cc: str, cxx: str, roots: list[Path]) -> Path:
    # the wheel and the unpacked .debs must be find roots: otherwise find_package(executorch) is re-rooted
    # under /usr/<triple> and fails
    root_list = " ".join(str(r) for r in roots)
    path.write_text(
        f"set(CMAKE_SYSTEM_NAME Linux)\nset(CMAKE_SYSTEM_PROCESSOR {target.cmake_processor})\n"
        f"set(CMAKE_C_COMPILER {cc})\nset(CMAKE_CXX_COMPILER {cxx})\n"
        f"set(CMAKE_FIND_ROOT_PATH /usr/{target.triple} {root_list})\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\nset(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\nset(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)\n")
    return path


def _needed(elf: Path) -> list[str]:
    r = subprocess.run(["patchelf", "--print-needed", str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"patchelf cannot read {elf}: {r.stderr.strip()}")
    return r.stdout.split()


def _library_closure(binary: Path, search: list[Path], loader: str) -> dict[str, Path]:
    """Every shared library `binary` loads (NEEDED entries, transitively), found in `search`."""
    found, todo = {}, _needed(binary)
    while todo:
        name = todo.pop()
        if name in found or name == loader:
            continue
        path = next((d / name for d in search if (d / name).is_file()), None)
        if path is None:
            raise BuildError(f"{binary.name} needs {name}, found in neither the wheel nor the cross toolchain")
        found[name] = path
        todo += _needed(path)
    return found


def bundle_key(target: Target, wheel: Path, debs: list[Path], cxx: str, cmake: str) -> str:
    h = hashlib.sha256()
    h.update(source_key(RUNNER_SOURCE_DIR, None, cmake).encode())
    h.update(source_key(CORE_SOURCE_DIR, None, cmake).encode())
    h.update(BUNDLE_FORMAT.encode())
    for f in (wheel, *debs):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    h.update(f"{target.abi}:{cxx}:{version}".encode())
    return h.hexdigest()


def ensure_bundle(abi: str, build_dir: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None,
                  force: bool = False) -> Bundle:
    """The runner bundle for `abi`, built (or reused from the cache) from the current sources."""
    if abi not in TARGETS:
        raise BuildError(f"compkit cannot build a runner for ABI {abi!r}: it builds for the host and for "
                         f"{', '.join(TARGETS)}")
    target = TARGETS[abi]
    build_dir = Path(build_dir or BUILD_ROOT / f"runner-{abi}").resolve()
    cc, cxx = _cross_tools(target)
    cmake = find_tool("cmake", "CMAKE_BIN_DIR", "cmake")
    if cmake is None:
        raise BuildError("cmake not found: pip install -c constraints.txt cmake==3.31.10")
    with build_lock(build_dir):
        downloads = build_dir / "downloads"
        wheel_path = fetch_wheel(target, downloads, wheel)
        debs = fetch_debs(target, downloads)
        key = bundle_key(target, wheel_path, debs, cxx, cmake)
        bundle_dir = build_dir / "bundle"
        stamp = bundle_dir / "compkit-bundle.stamp"
        if not force and stamp.is_file() and stamp.read_text().strip() == key:
            return Bundle(abi, bundle_dir, _bundle_digest(bundle_dir))
        work = Path(tempfile.mkdtemp(dir=build_dir, prefix=".build-"))
        try:
            _build(target, work, wheel_path, debs, cc, cxx, cmake, build_dir / "build.log")
            (work / "bundle" / stamp.name).write_text(key + "\n")
            with atomic_path(str(bundle_dir), directory=True) as tmp:  # the old bundle is replaced whole
                os.replace(work / "bundle", tmp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return Bundle(abi, bundle_dir, _bundle_digest(bundle_dir))


def _build(target: Target, work: Path, wheel: Path, debs: list[Path], cc: str, cxx: str, cmake: str,
           log: Path) -> None:
    sysroot = work / "deps"
    with zipfile.ZipFile(wheel) as z:  # the runtime, its headers and CMake config; not the Python parts
        z.extractall(sysroot / "wheel", [n for n in z.namelist() if re.match(r"executorch/(lib|include|share)/", n)])
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(sysroot / "debs")], check=True, capture_output=True)
    for so in (sysroot / "debs").rglob("libutf8proc.so*"):
        so.unlink()  # leaves libutf8proc.a: linked statically, one library fewer on the phone
    prefix = sysroot / "wheel" / "executorch"
    toolchain = _toolchain_file(work / "toolchain.cmake", target, cc, cxx, [sysroot / "wheel", sysroot / "debs"])
    log.write_text("")
    ninja = find_tool("ninja", "BIN_DIR", "ninja")
    obj = work / "obj"
    configure = [cmake, "-S", str(RUNNER_SOURCE_DIR), "-B", str(obj), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
                 f"-DCMAKE_PREFIX_PATH={prefix};{sysroot / 'debs' / 'usr'}", "-DCMAKE_BUILD_TYPE=Release"]
    if ninja:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    run_logged(configure, log, f"cmake configure for {target.abi}")
    run_logged([cmake, "--build", str(obj), "--parallel", str(os.cpu_count() or 1)], log,
                f"cross-compiling the runner for {target.abi}")
    bundle = work / "bundle"
    bundle.mkdir()
    runner = bundle / BINARY_NAME
    shutil.copy2(obj / BINARY_NAME, runner)
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN", str(runner)], check=True, capture_output=True)
    system = Path("/usr") / target.triple / "lib"
    libs = _library_closure(runner, [prefix / "lib", system], target.loader)
    for name in SYSTEM_LIBS:  # the loader only: these may be missing from NEEDED yet be dlopen'ed by libc
        libs.setdefault(name, system / name)
    for name, path in {**libs, target.loader: system / target.loader}.items():
        shutil.copy(path.resolve(), bundle / name)
    launcher = bundle / LAUNCHER_NAME
    launcher.write_text(
        "#!/bin/sh\n# compkit_runner through its own glibc loader: Android has no /lib/" + target.loader + "\n"
        'case "$0" in */*) d="${0%/*}" ;; *) d=. ;; esac\n'
        f'exec "$d/{target.loader}" --library-path "$d" "$d/{BINARY_NAME}" "$@"\n')
    for f in bundle.iterdir():
        f.chmod(0o755 if f.name in (BINARY_NAME, target.loader, LAUNCHER_NAME) else 0o644)
    (bundle / MANIFEST_NAME).write_text("".join(f"{sha256_file(f)}  {f.name}\n" for f in sorted(bundle.iterdir())))


def _bundle_digest(bundle_dir: Path) -> str:
    """The bundle's identity: the hash of its SHA256SUMS, which lists every file but the stamp."""
    return hashlib.sha256((bundle_dir / MANIFEST_NAME).read_bytes()).hexdigest()
