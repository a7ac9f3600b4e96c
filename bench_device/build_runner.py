"""Build the native benchmark runner (bench_device/runner) against the installed executorch wheel.

    python -m bench_device.build_runner [--abi host|arm64-v8a] [--wheel PATH] [--build-dir DIR] [--force]

prints the path of the compkit_runner binary (the host's, by default), or with --abi arm64-v8a the folder of
a self-contained arm64 bundle a phone runs with no NDK (bench_device/runner_bundle.py).

Other code calls ensure_runner(), which rebuilds only
when the runner's sources, the executorch install or the CMake version changed (a stamp file holds
a hash of all three). Builds are serialised with a file lock, so parallel callers share one build.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from compkit.errors import CompkitError
from compkit.files import write_text
from runtime_cpp.build import BuildError, build_lock, find_tool, run_logged, source_key  # one CMake driver

RUNNER_SOURCE_DIR = Path(__file__).resolve().parent / "runner"
CORE_SOURCE_DIR = Path(__file__).resolve().parent.parent / "runtime_cpp"  # the pipeline mode links its core
DEFAULT_BUILD_DIR = Path(__file__).resolve().parent.parent / "build" / "runner"
BINARY_NAME = "compkit_runner"
STAMP_NAME = "compkit-build.stamp"
LOG_NAME = "build.log"


def executorch_prefix() -> Path:
    """The installed executorch package: its lib/cmake/executorch holds the CMake config."""
    try:
        import executorch
    except ImportError as e:
        raise BuildError("executorch is not installed: pip install -c constraints.txt executorch==1.5.1") from e
    return Path(executorch.__path__[0])  # namespace package: no __file__


def ensure_runner(build_dir: str | Path | None = None, force: bool = False,
                  source_dir: str | Path | None = None) -> Path:
    """Return the path of a runner binary built from the current sources, building it if needed."""
    build_dir = Path(build_dir or DEFAULT_BUILD_DIR).resolve()
    source_dir = Path(source_dir or RUNNER_SOURCE_DIR).resolve()
    if not (source_dir / "CMakeLists.txt").is_file():
        raise BuildError(f"no CMakeLists.txt in {source_dir}: pass the runner's source directory")
    cmake = find_tool("cmake", "CMAKE_BIN_DIR", "cmake")
    if cmake is None:
        raise BuildError("cmake not found: pip install -c constraints.txt cmake==3.31.10")
    prefix = executorch_prefix()
    binary = build_dir / BINARY_NAME
    stamp = build_dir / STAMP_NAME

    with build_lock(build_dir):
        key = source_key(source_dir, prefix, cmake) + "+" + source_key(CORE_SOURCE_DIR, prefix, cmake)
        if not force and binary.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
            return binary
        stamp.unlink(missing_ok=True)  # a failed build must not look current
        log_path = build_dir / LOG_NAME
        log_path.write_text("")
        configure = [cmake, "-S", str(source_dir), "-B", str(build_dir),
                     f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"]
        ninja = find_tool("ninja", "BIN_DIR", "ninja")
        cache = build_dir / "CMakeCache.txt"
        if ninja and not cache.exists():  # the generator can only be chosen on a fresh tree
            configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        run_logged(configure, log_path, "cmake configure")
        build = [cmake, "--build", str(build_dir), "--parallel", str(os.cpu_count() or 1)]
        run_logged(build + (["--clean-first"] if force else []), log_path, "compiling the runner")
        if not binary.is_file():
            raise BuildError(f"the build finished but {binary} is missing; full log: {log_path}")
        write_text(str(stamp), key + "\n")
    return binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench_device.build_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--abi", default="host", help="host (default) or an Android ABI: arm64-v8a")
    parser.add_argument("--wheel", default=None, help="a downloaded executorch wheel for --abi (default: pip "
                        "download; or $COMPKIT_ARM64_WHEEL)")
    parser.add_argument("--build-dir", default=None, help=f"build directory (default: {DEFAULT_BUILD_DIR}, "
                        "build/runner-ABI for --abi)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached binary is current")
    args = parser.parse_args(argv)
    try:
        if args.abi == "host":
            print(ensure_runner(args.build_dir, force=args.force))
        else:
            from .runner_bundle import ensure_bundle

            print(ensure_bundle(args.abi, args.build_dir, wheel=args.wheel, force=args.force).path)
    except CompkitError as e:
        print(f"build_runner: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
