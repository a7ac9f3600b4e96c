"""The arm64 runner bundle (bench_device/runner_bundle.py) and an emulated arm64 phone to run it on.

The phone is the loopback adb device in arm64 mode (tests/adb_loopback_device.py), driven through Debian's
real adb: it answers getprop like an arm64 phone and runs aarch64 programs under qemu-user, which is
70-440x slower than native, so models are tiny and runs are one or two iterations. Only correctness is
checked here; no figure from the emulated device means anything for speed.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench_device.build_runner import BuildError, main as build_main
from bench_device.device_runner import DeviceRunner
from bench_device.devices import AdbDevice, DeviceError, LocalDevice
from bench_device.runner_bundle import LAUNCHER_NAME, MANIFEST_NAME, TARGETS, ensure_bundle, fetch_wheel

sys.path.insert(0, str(Path(__file__).parent))
import tiny_build  # noqa: E402
from adb_loopback_device import LoopbackAdbDevice  # noqa: E402
from test_adb_device import ADB, adb_server, _free_port  # noqa: E402,F401  (adb_server: a fixture)
from test_bench_run_e2e import cli  # noqa: E402

needs_cross = pytest.mark.skipif(
    not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("patchelf") and shutil.which("qemu-aarch64")
         and ADB), reason="needs g++-aarch64-linux-gnu, patchelf, qemu-user and adb (`make test` installs them)")
EM_AARCH64 = 183


def _one_line(message: str) -> str:
    assert message and "\n" not in message.strip()
    return message


@pytest.fixture(scope="module")
def bundle():
    return ensure_bundle("arm64-v8a")  # cached in build/runner-arm64-v8a: ~3 min the first time on 2 cores


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("arm64")
    return Path(tiny_build.make_tiny_build(str(root / "build"), pte_buckets=(32,), onnx_buckets=(),
                                           evo_formats=("xnnpack",)))


def _arm64_device(request, **props) -> tuple[LoopbackAdbDevice, AdbDevice]:
    request.getfixturevalue("adb_server")
    loopback = LoopbackAdbDevice(arm64=True)
    loopback.props.update(props)
    request.addfinalizer(loopback.stop)
    return loopback, AdbDevice(loopback.serial, timeout=300, connect_timeout=5)


# --- the bundle ------------------------------------------------------------------------------------

@needs_cross
@pytest.mark.slow
def test_bundle_is_a_self_contained_arm64_runner(bundle):
    names = {p.name for p in bundle.files()}
    assert {"compkit_runner", LAUNCHER_NAME, "ld-linux-aarch64.so.1", "libc.so.6", "libstdc++.so.6",
            "libexecutorch.so", "libexecutorch_backend_xnnpack.so", MANIFEST_NAME} <= names
    runner = (bundle.path / "compkit_runner").read_bytes()
    assert runner[:4] == b"\x7fELF" and int.from_bytes(runner[18:20], "little") == EM_AARCH64
    rpath = subprocess.run(["patchelf", "--print-rpath", str(bundle.path / "compkit_runner")], capture_output=True,
                           text=True, check=True).stdout.strip()
    assert rpath == "$ORIGIN"  # no path of the build machine
    listed = {line.split()[1] for line in (bundle.path / MANIFEST_NAME).read_text().splitlines()}
    assert listed == names - {MANIFEST_NAME, "compkit-bundle.stamp"}
    # a cached bundle is reused as it is
    mtime = (bundle.path / "compkit_runner").stat().st_mtime_ns
    again = ensure_bundle("arm64-v8a")
    assert again == bundle and (bundle.path / "compkit_runner").stat().st_mtime_ns == mtime


@needs_cross
@pytest.mark.slow
def test_bundle_runs_under_qemu_only_through_its_own_loader(bundle):
    qemu = ["qemu-aarch64", "-cpu", "max,sme=off"]
    r = subprocess.run([*qemu, str(bundle.path / "ld-linux-aarch64.so.1"), "--library-path", str(bundle.path),
                        str(bundle.path / "compkit_runner"), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: compkit_runner" in r.stdout
    r = subprocess.run([*qemu, str(bundle.path / "compkit_runner"), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0  # no /lib/ld-linux-aarch64.so.1 here, as on a phone


def test_unknown_abi_is_a_one_line_error(capsys):
    with pytest.raises(BuildError, match="cannot build a runner for ABI 'riscv64'"):
        ensure_bundle("riscv64")
    assert build_main(["--abi", "mips"]) == 1
    err = capsys.readouterr().err
    assert _one_line(err).startswith("build_runner: error:") and "'mips'" in err


def test_missing_cross_compiler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="apt-get install g\\+\\+-aarch64-linux-gnu") as e:
        ensure_bundle("arm64-v8a", tmp_path / "b")
    _one_line(str(e.value))
    assert not (tmp_path / "b").exists()


def test_unfetchable_wheel_says_offline_and_how_to_point_at_one(tmp_path, monkeypatch):
    for k, v in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
                 "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": ""}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("COMPKIT_ARM64_WHEEL", raising=False)
    with pytest.raises(BuildError, match=r"offline\?.*--wheel PATH or set \$COMPKIT_ARM64_WHEEL") as e:
        fetch_wheel(TARGETS["arm64-v8a"], tmp_path / "downloads")
    _one_line(str(e.value))
    assert not list((tmp_path / "downloads").iterdir())  # no partial download left behind
    (tmp_path / "x.whl").write_text("not a zip")
    with pytest.raises(BuildError, match="is not a wheel file"):
        fetch_wheel(TARGETS["arm64-v8a"], tmp_path / "downloads", tmp_path / "x.whl")


# --- the emulated arm64 phone ----------------------------------------------------------------------

@needs_cross
@pytest.mark.slow
def test_arm64_device_gets_the_bundle_once_and_reuses_it(request, bundle, tmp_path):
    loopback, dev = _arm64_device(request)
    assert dev.abi() == "arm64-v8a" and "emulated" in dev.info()["model"]
    runner = DeviceRunner(dev)
    assert runner.command[0] == "sh" and runner.command[1].endswith("/" + LAUNCHER_NAME)
    remote = loopback.host_path(runner.command[1]).parent
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in bundle.files()
                                                              if p.name != "compkit-bundle.stamp")
    mtimes = {p.name: p.stat().st_mtime_ns for p in remote.iterdir()}
    dev.cleanup()  # a run's cleanup clears the work dir; the bundle stays for the next run
    dev = AdbDevice(loopback.serial, timeout=300, connect_timeout=5)
    assert DeviceRunner(dev).command == runner.command
    assert {p.name: p.stat().st_mtime_ns for p in remote.iterdir()} == mtimes  # reused, not pushed again
    (remote / "libexecutorch.so").write_bytes(b"damaged")  # altered on the device: pushed again, whole
    DeviceRunner(dev)
    assert (remote / "libexecutorch.so").read_bytes() == (bundle.path / "libexecutorch.so").read_bytes()


@needs_cross
@pytest.mark.slow
def test_a_bundle_that_cannot_start_is_one_line_with_its_stderr(request, bundle, tmp_path):
    _, dev = _arm64_device(request)
    broken = tmp_path / "broken"
    shutil.copytree(bundle.path, broken)
    (broken / "libexecutorch.so").unlink()
    (broken / MANIFEST_NAME).write_text("".join(line + "\n" for line in (bundle.path / MANIFEST_NAME).read_text()
                                                .splitlines() if not line.endswith(" libexecutorch.so")))
    with pytest.raises(DeviceError, match=r"bundle does not start .*libexecutorch\.so") as e:
        dev.install_bundle(broken, "0" * 64, LAUNCHER_NAME)
    _one_line(str(e.value))


@needs_cross
def test_device_abi_picks_the_runner_and_unknown_abis_fail_in_one_line(request):
    request.getfixturevalue("adb_server")
    x86 = LoopbackAdbDevice()  # an x86_64 device (an emulator): the host's runner, as one binary
    request.addfinalizer(x86.stop)
    dev = AdbDevice(x86.serial, timeout=60, connect_timeout=5)
    assert dev.abi() == "x86_64" and len(DeviceRunner(dev).command) == 1
    odd = LoopbackAdbDevice(props={"ro.product.cpu.abi": "riscv64", "ro.product.model": "Odd"})
    request.addfinalizer(odd.stop)
    with pytest.raises(DeviceError, match=r"has ABI 'riscv64': compkit builds runners for x86_64") as e:
        DeviceRunner(AdbDevice(odd.serial, timeout=60, connect_timeout=5))
    _one_line(str(e.value))
    blank = LoopbackAdbDevice(props={"ro.product.cpu.abi": ""})  # no property: `uname -m` decides
    request.addfinalizer(blank.stop)
    assert AdbDevice(blank.serial, timeout=60, connect_timeout=5).abi() == LocalDevice().abi()


@needs_cross
@pytest.mark.slow
def test_bench_run_on_the_emulated_arm64_phone(build, bundle, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(_free_port()), "HOME": str(home)}
    env.pop("ANDROID_SERIAL", None)
    with LoopbackAdbDevice(arm64=True) as phone:
        try:
            stem = tmp_path / "arm64"
            r = cli("bench_device.run", "--device", f"adb:{phone.serial}", "--build", build, "--iters", 1,
                    "--warmup", 0, "--out", stem, env=env, timeout=1200)
        finally:
            subprocess.run([ADB, "kill-server"], capture_output=True, timeout=20, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(stem.with_suffix(".json").read_text())
    assert result["device_info"]["abi"] == "arm64-v8a"
    rows = {row["file"]: row for row in result["artifacts"]}
    assert rows["moos_xnnpack_fp32_32.pte"]["status"] == "ok" and rows["evo_xnnpack_fp32.pte"]["status"] == "ok"
    assert "emulated" in stem.with_suffix(".md").read_text().splitlines()[0]  # from the model string


PROMPT = ("The meeting moved to Thursday at 10:00 in room 4B. Bring the Q3 numbers and the slides. "
          "Natalia sold clips to 48 of her friends in April, and then half as many in May.")


@needs_cross
@pytest.mark.slow
def test_both_pipelines_decide_on_arm64_as_on_this_host(request, build, bundle):
    _, dev = _arm64_device(request)
    phone, host = DeviceRunner(dev), DeviceRunner(LocalDevice())
    ptes = [build / "moos_xnnpack_fp32_32.pte"]
    got = [r.moos_pipeline(ptes, build / "moos_tokenizer", PROMPT, 0.5, iters=1, warmup=0) for r in (phone, host)]
    assert got[0]["compressed"] == got[1]["compressed"] and 0 < got[0]["kept_words"] < got[0]["words"]
    rng = np.random.default_rng(0)
    inputs = {0: rng.standard_normal((1, 36, 32), dtype=np.float32), 1: rng.standard_normal((1, 8, 24), dtype=np.float32)}
    kept = [r.evo_pipeline(build / "evo_xnnpack_fp32.pte", ratio=3, inputs=inputs, iters=1, warmup=0)["kept_indices"]
            for r in (phone, host)]
    assert kept[0] == kept[1] and len(kept[0]) == 12


# --- decision parity on the device's kernels ----------------------------------------------------------

def _with_vectors(build: Path, texts) -> Path:
    """export.build writes vectors.json; device parity reads its texts (and EvoComp inputs when present)."""
    (build / "vectors.json").write_text(json.dumps({"texts": list(texts)}), encoding="utf-8")
    return build


@needs_cross
@pytest.mark.slow
def test_device_parity_judges_arm64_kernels_against_this_hosts(request, build, bundle, tmp_path):
    from bench_device import device_parity

    _with_vectors(build, [PROMPT, "Café au lait, naïve résumé.", "Numbers: 3.14159, 1,000,000, -42."])
    loopback, _ = _arm64_device(request)
    stem = tmp_path / "dp"
    code = device_parity.main([str(build), "--device", f"adb:{loopback.serial}", "--texts", "3", "--evo-sets", "2",
                               "--out", str(stem)])
    report = json.loads(stem.with_suffix(".json").read_text())
    rows = {r["file"]: r for r in report["artifacts"]}
    assert code == 0 and report["device_info"]["abi"] == "arm64-v8a" and report["host_abi"] == "x86_64"
    moos, evo = rows["moos_xnnpack_fp32_32.pte"], rows["evo_xnnpack_fp32.pte"]
    assert moos["status"] == evo["status"] == "pass"
    assert moos["texts"] == 3 and moos["windows"] >= 3 and 0 <= moos["numeric"]["max_abs"] < 1e-4
    assert set(moos["decisions"]["word_agreement"]) == {"0.25", "0.33", "0.5"}
    assert evo["token_sets"] == 2 and set(evo["decisions"]["iou"]) == {"2x", "3x", "4x"}
    md = stem.with_suffix(".md").read_text()
    assert "emulated" in md.splitlines()[0] and "| moos_xnnpack_fp32_32.pte | fp32 |" in md


def test_device_parity_without_vectors_is_one_line(tmp_path, capsys):
    from bench_device import device_parity

    build = Path(tiny_build.make_tiny_build(str(tmp_path / "b"), pte_buckets=(), onnx_buckets=(32,)))
    capsys.readouterr()  # the build's progress bars
    assert device_parity.main([str(build), "--device", "local"]) == 1
    err = capsys.readouterr().err
    assert "vectors.json is missing" in _one_line(err)
    assert not list(build.glob("device_parity*"))
