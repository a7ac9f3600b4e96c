"""Build runtime_cpp (compkit_core + its GoogleTest suite) against the installed executorch wheel.

    python -m runtime_cpp.build [--build-dir DIR] [--force] [--test]

prints the build directory; --test also runs ctest there. Other code calls ensure_built(), which
rebuilds only when the sources, the executorch install or the CMake version changed (a stamp file
holds a hash of all three), under a file lock so parallel callers share one build. The approach is
bench_device/build_runner.py's.

System packages (Debian names): nlohmann-json3-dev, libutf8proc-dev, libgtest-dev.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from compkit.errors import CompkitError
from compkit.files import write_text

SOURCE_DIR = Path(__file__).resolve().parent
DEFAULT_BUILD_DIR = SOURCE_DIR.parent / "build" / "runtime_cpp"
STAMP_NAME = "compkit-core.stamp"
LOG_NAME = "build.log"
DEBIAN_PACKAGES = ("nlohmann-json3-dev", "libutf8proc-dev", "libgtest-dev")


class BuildError(CompkitError, RuntimeError):
    """runtime_cpp could not be configured or compiled; the message names the log file."""


def executorch_prefix() -> Path | None:
    try:
        import executorch
    except ImportError:
        return None
    return Path(executorch.__path__[0])  # namespace package: no __file__


def find_tool(module_name: str, attr: str, exe: str) -> str | None:
    """Prefer the pip-installed cmake/ninja (pinned in pyproject) over whatever is on PATH."""
    try:
        candidate = Path(getattr(__import__(module_name), attr)) / exe
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which(exe)


SOURCE_SUFFIXES = {".cpp", ".cc", ".h", ".hpp", ".cmake"}


def source_key(source_dir: Path, prefix: Path | None, cmake: str) -> str:
    """Hash of a CMake project's sources, the ExecuTorch wheel's libraries and the cmake binary: a cached
    build is reused only while this stays the same (shared with bench_device/build_runner.py)."""
    h = hashlib.sha256()
    for path in sorted(source_dir.rglob("*")):
        if (path.is_file() and "build" not in path.relative_to(source_dir).parts
                and (path.name == "CMakeLists.txt" or path.suffix in SOURCE_SUFFIXES)):
            h.update(str(path.relative_to(source_dir)).encode())
            h.update(path.read_bytes())
    h.update(str(prefix).encode())
    if prefix is not None:
        for lib in sorted((prefix / "lib").glob("*.so")):  # a reinstalled wheel changes these
            st = lib.stat()
            h.update(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(cmake.encode())
    return h.hexdigest()


@contextmanager
def build_lock(build_dir: Path):
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_COMPILER_ERROR = re.compile(r"(^|[\s:])(fatal )?error:", re.IGNORECASE)


def _first_error(lines: list[str]) -> str:
    """The first error line of a step's output; CMake puts its message on the lines after 'CMake Error'."""
    for i, line in enumerate(lines):
        if line.startswith("CMake Error"):
            detail = next((ln.strip() for ln in lines[i + 1:] if ln.strip()), "")
            return f"{line.strip()} {detail}".strip()
        if _COMPILER_ERROR.search(line):
            return line.strip()
    return ""


def run_logged(cmd: list[str], log_path: Path, step: str) -> None:
    """Run one build step with its output appended to log_path; on failure a one-line BuildError with the
    step, its first error line (and the Debian packages when a system library is missing) and the log.
    The one CMake step driver of runtime_cpp and bench_device's runner builds."""
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        start = log.tell()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path, errors="replace") as log:
            log.seek(start)
            lines = log.read().splitlines()
        reason = _first_error(lines)
        if "nlohmann_json" in "\n".join(lines) or "UTF8PROC" in "\n".join(lines) or "GTest" in reason:
            reason += f" (install the system packages: apt-get install {' '.join(DEBIAN_PACKAGES)})"
        raise BuildError(f"{step} failed (exit {proc.returncode})" + (f": {reason}" if reason else "") + f"; full log: {log_path}")


def ensure_built(build_dir: str | Path | None = None, force: bool = False) -> Path:
    """Return the build directory holding compkit_core and compkit_tests, building them if needed."""
    build_dir = Path(build_dir or DEFAULT_BUILD_DIR).resolve()
    cmake = find_tool("cmake", "CMAKE_BIN_DIR", "cmake")
    if cmake is None:
        raise BuildError("cmake not found: pip install -c constraints.txt cmake==3.31.10")
    prefix = executorch_prefix()
    stamp = build_dir / STAMP_NAME
    with build_lock(build_dir):
        key = source_key(SOURCE_DIR, prefix, cmake)
        if not force and stamp.is_file() and stamp.read_text().strip() == key and (build_dir / "compkit_tests").is_file():
            return build_dir
        stamp.unlink(missing_ok=True)  # a failed build must not look current
        log_path = build_dir / LOG_NAME
        log_path.write_text("")
        configure = [cmake, "-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release"]
        if prefix is not None:
            configure += [f"-DCMAKE_PREFIX_PATH={prefix}", "-DCOMPKIT_WITH_EXECUTORCH=ON"]
        ninja = find_tool("ninja", "BIN_DIR", "ninja")
        if ninja and not (build_dir / "CMakeCache.txt").exists():  # the generator is chosen on a fresh tree only
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        run_logged(configure, log_path, "cmake configure")
        build = [cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)]
        run_logged(build + (["--clean-first"] if force else []), log_path, "compiling runtime_cpp")
        write_text(str(stamp), key + "\n")
    return build_dir


def run_ctest(build_dir: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """ctest in build_dir with extra environment; returns the finished process (output in stdout)."""
    ctest = find_tool("cmake", "CMAKE_BIN_DIR", "ctest") or "ctest"
    return subprocess.run([ctest, "--test-dir", str(build_dir), "--output-on-failure", "-j", str(os.cpu_count() or 1)],
                          env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime_cpp.build", description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default=None, help=f"build directory (default: {DEFAULT_BUILD_DIR})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached build is current")
    parser.add_argument("--test", action="store_true", help="run ctest after building")
    args = parser.parse_args(argv)
    try:
        build_dir = ensure_built(args.build_dir, force=args.force)
    except CompkitError as e:
        print(f"runtime_cpp.build: error: {e}", file=sys.stderr)
        return 1
    print(build_dir)
    if args.test:
        proc = run_ctest(build_dir)
        print(proc.stdout)
        return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
