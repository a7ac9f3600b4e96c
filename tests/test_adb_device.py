"""bench_device.devices against this machine and, through Debian's real adb, a loopback adb device.

The adb tests prove host-side orchestration over the real adb client, server and wire protocol;
the device end is tests/adb_loopback_device.py running commands on this host (docs/DEVICES.md).
Each adb test gets its own adb server port (never 5037) and HOME, and kills its server after.
"""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench_device.devices import AdbDevice, DeviceError, LocalDevice, device_from_spec, sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from adb_loopback_device import FEATURES, Faults, LoopbackAdbDevice  # noqa: E402

ADB = shutil.which("adb")
needs_adb = pytest.mark.skipif(ADB is None, reason="adb missing: apt-get install adb (`make test` does)")
ARGS_THAT_NEED_QUOTING = ["a b", "it's", 'say "hi"', "$HOME", "*", "a;b", "back\\slash", "x&&y", ""]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def adb_server(tmp_path, monkeypatch):
    port = _free_port()
    assert port != 5037
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("ADB", raising=False)
    yield port
    subprocess.run([ADB, "kill-server"], capture_output=True, timeout=20)


def _loopback(request, **kwargs) -> LoopbackAdbDevice:
    request.getfixturevalue("adb_server")
    device = LoopbackAdbDevice(**kwargs)
    request.addfinalizer(device.stop)
    return device


def _adb_device(loopback: LoopbackAdbDevice, **kwargs) -> AdbDevice:
    return AdbDevice(loopback.serial, timeout=kwargs.pop("timeout", 20), connect_timeout=5, **kwargs)


@pytest.fixture
def loopback(request):
    return _loopback(request)


@pytest.fixture(params=["local", pytest.param("adb", marks=needs_adb)])
def device(request, tmp_path):
    if request.param == "local":
        return LocalDevice(base=tmp_path)
    return _adb_device(request.getfixturevalue("loopback"))


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the same behaviour on both devices -------------------------------------------------------

def test_exit_code_and_split_stderr(device):
    code, out, err = device.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, err) == (3, "out\n", "err\n")
    assert device.run(["true"]) == (0, "", "")


def test_arguments_reach_the_command_unchanged(device):
    out = device.run(["printf", "%s\\n", *ARGS_THAT_NEED_QUOTING], check=True).stdout
    assert out.split("\n")[:-1] == ARGS_THAT_NEED_QUOTING


def test_commands_run_in_the_workdir_with_env_and_pinning(device):
    assert device.run(["pwd"], check=True).stdout.strip() == device.workdir
    assert device.run(["sh", "-c", 'echo "$FOO"'], env={"FOO": "a b"}).stdout == "a b\n"
    cpu = min(os.sched_getaffinity(0))
    pinned = device.run(["grep", "Cpus_allowed_list", "/proc/self/status"], cpus=[cpu], check=True)
    assert pinned.stdout.split()[-1] == str(cpu)


def test_nonzero_exit_with_check_is_a_one_line_error(device):
    with pytest.raises(DeviceError, match=r"exited with 7: boom") as e:
        device.run(["sh", "-c", "echo partial; echo first >&2; echo boom >&2; exit 7"], check=True)
    _one_line(e)


def test_push_pull_roundtrip_verified(device, tmp_path):
    src = tmp_path / "model.pte"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several sync DATA chunks, odd tail
    remote = device.push(src, "sub dir/model.pte")
    assert remote == f"{device.workdir}/sub dir/model.pte"
    assert device.run(["sha256sum", remote]).stdout.split()[0] == sha256_file(src)
    back = tmp_path / "back"
    back.mkdir()
    got = device.pull("sub dir/model.pte", back)
    assert got == back / "model.pte" and got.read_bytes() == src.read_bytes()
    assert _no_leftovers(back) == ["model.pte"]


def test_pull_of_missing_file_leaves_nothing(device, tmp_path):
    with pytest.raises(DeviceError, match="nothing.bin") as e:
        device.pull("nothing.bin", tmp_path / "nothing.bin")
    _one_line(e)
    assert not (tmp_path / "nothing.bin").exists()


def test_push_of_missing_local_file(device, tmp_path):
    with pytest.raises(DeviceError, match="no such local file"):
        device.push(tmp_path / "absent.pte")


def test_a_hanging_command_times_out(device):
    with pytest.raises(DeviceError, match="no answer after 1 s") as e:
        device.run(["sleep", "30"], timeout=1)
    _one_line(e)
    assert device.run(["echo", "still alive"]).stdout == "still alive\n"


def test_cleanup_removes_the_workdir(device, tmp_path, request):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    device.push(src)
    device.cleanup()
    if isinstance(device, LocalDevice):
        assert not Path(device.workdir).exists()
    else:
        loopback = request.getfixturevalue("loopback")
        assert not loopback.host_path(device.workdir).exists()
        assert loopback.host_path("/data/local/tmp").is_dir()


def test_local_info_describes_this_machine():
    info = LocalDevice().info()
    assert info["kind"] == "local" and info["cores"] == os.cpu_count() and info["abi"]


# --- adb only -----------------------------------------------------------------------------------

@needs_adb
def test_adb_info_comes_from_getprop_and_cpu_count(request):
    props = {"ro.product.model": "Pixel Test", "ro.soc.model": "", "ro.board.platform": "tensor",
             "ro.product.cpu.abi": "arm64-v8a", "ro.build.version.release": "15"}
    dev = _adb_device(_loopback(request, props=props))
    assert dev.info() == {"kind": "adb", "serial": dev.serial, "model": "Pixel Test", "soc": "tensor",
                          "abi": "arm64-v8a", "cores": len(os.sched_getaffinity(0)), "os": "Android 15"}


@needs_adb
@pytest.mark.parametrize("features, version", [(("shell_v2",), 0x01000000), (FEATURES, 0x01000001)],
                         ids=["stat_v1-checksummed", "stat_v2-ls_v2-unchecksummed"])
def test_adb_transfers_with_old_and_new_protocol_variants(request, tmp_path, features, version):
    dev = _adb_device(_loopback(request, features=features, version=version))
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(300_000))
    dev.push(src)
    assert dev.pull("w.bin", tmp_path / "w2.bin").read_bytes() == src.read_bytes()
    listing = subprocess.run([ADB, "-s", dev.serial, "ls", dev.workdir], capture_output=True,
                             text=True, timeout=20).stdout  # LIST or LIS2, by features
    assert listing.split()[-1] == "w.bin" and int(listing.split()[-3], 16) == 300_000


@needs_adb
def test_adb_push_creates_the_workdir_on_connect(loopback):
    dev = _adb_device(loopback, workdir="/data/local/tmp/compkit-x")
    assert loopback.host_path("/data/local/tmp/compkit-x").is_dir()
    assert dev.run(["ls", "-d", "/data/local/tmp/compkit-x"]).stdout == "/data/local/tmp/compkit-x\n"


@needs_adb
def test_device_that_never_answers_cnxn_fails_clearly(request):
    loopback = _loopback(request, faults=Faults(no_cnxn=True))
    with pytest.raises(DeviceError, match=r"is not ready \(state: .*(offline|not found)") as e:
        AdbDevice(loopback.serial, connect_timeout=2)
    _one_line(e)


@needs_adb
def test_device_without_shell_v2_is_refused(request):
    loopback = _loopback(request, features=("stat_v2",))
    with pytest.raises(DeviceError, match="lacks the shell_v2 feature"):
        _adb_device(loopback)


@needs_adb
def test_device_killed_mid_run_is_reported_not_taken_as_success(request):
    loopback = _loopback(request, faults=Faults(die_on="sleep 30"))
    dev = _adb_device(loopback)
    # adb itself exits 0 here with truncated output; the device layer must notice
    with pytest.raises(DeviceError, match=r"lost the device .*state now: .*offline") as e:
        dev.run(["sh", "-c", "echo started; sleep 30"])
    _one_line(e)


@needs_adb
def test_sync_fail_on_push_and_pull(request, tmp_path):
    loopback = _loopback(request, faults=Faults(sync_fail="Read-only file system"))
    dev = _adb_device(loopback)
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(200_000))
    with pytest.raises(DeviceError, match="remote Read-only file system") as e:
        dev.push(src)
    _one_line(e)
    assert not loopback.host_path(dev.remote_path("a.bin")).exists()
    # a file that exists on the device, but whose RECV is refused
    shutil.copy(src, loopback.host_path(dev.remote_path("b.bin")))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DeviceError, match="remote Read-only file system"):
        dev.pull("b.bin", out / "b.bin")
    assert _no_leftovers(out) == []


@needs_adb
def test_full_remote_disk_fails_push_and_leaves_no_remote_file(request, tmp_path):
    loopback = _loopback(request, faults=Faults(disk_free=1_000_000))
    dev = _adb_device(loopback)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))
    with pytest.raises(DeviceError, match="No space left on device") as e:
        dev.push(src)
    _one_line(e)
    assert not loopback.host_path(dev.remote_path("big.bin")).exists()
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(100_000))
    assert dev.push(small) == dev.remote_path("small.bin")  # the device itself still works


@needs_adb
def test_corrupted_push_is_caught_and_removed(request, tmp_path):
    loopback = _loopback(request, faults=Faults(corrupt_push=True))
    dev = _adb_device(loopback)
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(500_000))
    with pytest.raises(DeviceError, match="sha256 mismatch") as e:
        dev.push(src)
    _one_line(e)
    assert not loopback.host_path(dev.remote_path("m.bin")).exists()


@needs_adb
def test_corrupted_pull_leaves_nothing_locally(request, tmp_path):
    loopback = _loopback(request, faults=Faults(corrupt_pull=True))
    dev = _adb_device(loopback)
    (loopback.host_path(dev.workdir) / "m.bin").write_bytes(os.urandom(500_000))
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.bin").write_bytes(b"previous result")
    with pytest.raises(DeviceError, match="sha256 mismatch") as e:
        dev.pull("m.bin", out)
    _one_line(e)
    assert _no_leftovers(out) == ["m.bin"] and (out / "m.bin").read_bytes() == b"previous result"


@needs_adb
def test_device_from_spec(loopback, tmp_path):
    assert isinstance(device_from_spec("local", base=tmp_path), LocalDevice)
    dev = device_from_spec(f"adb:{loopback.serial}", connect_timeout=5)
    assert isinstance(dev, AdbDevice) and dev.serial == loopback.serial
    with pytest.raises(DeviceError, match="use 'local' or 'adb:SERIAL'"):
        device_from_spec("phone")


def test_missing_adb_binary_is_a_clear_error():
    with pytest.raises(DeviceError, match=r"adb not found .*set \$ADB"):
        AdbDevice("emulator-5554", adb="/nonexistent/adb")
