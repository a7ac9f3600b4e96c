"""Where benchmarks run: this machine (LocalDevice) or a phone over the real `adb` (AdbDevice).

Both offer one interface: run a command in the device's work directory, push and pull files
(verified by sha256 on both ends), describe the device, clean up, cool down between runs.
Every failure is a DeviceError with a one-line message saying what failed and what to do.

adb facts this file is built around (measured against Debian's adb 29.0.6, see
docs/DEVICES.md): `adb connect` exits 0 even when it fails, so the connection is checked with
`get-state`; adb has no read timeouts, so every call has one; `adb shell` joins its arguments
with spaces, so commands are quoted with shlex.join; exit codes and separate stderr need the
device's shell_v2 feature; when the connection drops mid-command `adb shell` still exits 0 with
truncated output, so each command ends by printing a marker with its exit code on stderr, and a
missing marker means the device was lost.
"""
from __future__ import annotations

import os
import platform
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple, Sequence

from compkit.errors import CompkitError
from compkit.files import atomic_path, sha256_path as sha256_file  # the one sha256 helper (a file or a folder)

DEFAULT_REMOTE_WORKDIR = "/data/local/tmp/compkit"
_MARKER = "__compkit_exit="
_MARKER_RE = re.compile(r"\n" + _MARKER + r"(\d+)\n\Z")
_MIN_TRANSFER_RATE = 1_000_000  # bytes/s assumed when sizing push/pull timeouts


# `uname -m` names -> Android ABI names (ro.product.cpu.abi), for devices without the property and for hosts
_ABI_OF_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a",
                   "armv7l": "armeabi-v7a", "armv8l": "armeabi-v7a", "i686": "x86", "i386": "x86"}


def abi_of_machine(machine: str) -> str:
    return _ABI_OF_MACHINE.get(machine.strip().lower(), machine.strip())


def host_abi() -> str:
    return abi_of_machine(platform.machine())


class DeviceError(CompkitError, RuntimeError):
    """A device operation failed; the message is one line: what failed and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class RunResult(NamedTuple):
    code: int
    stdout: str
    stderr: str


def _last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one (pass stderr before stdout)."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def _adb_error(r: subprocess.CompletedProcess) -> str:
    """adb push/pull print their error to stdout, between progress lines: find it."""
    errors = [line.strip() for line in (r.stderr + "\n" + r.stdout).splitlines() if "error:" in line]
    return errors[-1].removeprefix("adb: ").removeprefix("error: ") if errors else _last_line(r.stderr, r.stdout)


def _call(argv: Sequence[str], timeout: float, what: str, env: dict | None = None,
          cwd: str | None = None) -> subprocess.CompletedProcess:
    """subprocess.run with a hard timeout that kills the whole process group (adb never times out)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    except OSError as e:
        raise DeviceError(f"{what}: cannot start {argv[0]!r}: {e.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeviceError(f"{what}: no answer after {timeout:g} s; check the device is connected "
                          f"and responsive, or raise the timeout") from None
    return subprocess.CompletedProcess(argv, proc.returncode,
                                       out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


class Device(ABC):
    """A place to run benchmark commands, with a scratch work directory."""

    name: str
    workdir: str

    @abstractmethod
    def _run(self, cmd: list[str], timeout: float) -> RunResult: ...

    @abstractmethod
    def push(self, local: str | os.PathLike, remote: str | None = None) -> str:
        """Copy a local file to the device (relative remote paths are inside workdir); return its path."""

    @abstractmethod
    def pull(self, remote: str, local: str | os.PathLike) -> Path:
        """Copy a device file here; on failure nothing is left at `local`."""

    @abstractmethod
    def info(self) -> dict:
        """model, soc, abi, cores, os of the device (plus kind and serial)."""

    @abstractmethod
    def cleanup(self) -> None:
        """Delete the work directory and everything in it."""

    def run(self, cmd: Sequence[str], *, timeout: float | None = None, check: bool = False,
            cpus: Sequence[int] | None = None, env: dict[str, str] | None = None) -> RunResult:
        """Run cmd (a list, never a shell string) in workdir; optionally pinned to `cpus` via taskset."""
        if isinstance(cmd, str) or not cmd:
            raise DeviceError(f"run needs a non-empty list of arguments, got {cmd!r}")
        argv = [str(a) for a in cmd]
        if env:
            argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
        if cpus:
            mask = sum(1 << int(c) for c in cpus)  # toybox taskset only takes a hex mask
            argv = ["taskset", f"{mask:x}", *argv]
        result = self._run(argv, self.timeout if timeout is None else timeout)
        if check and result.code != 0:
            raise DeviceError(f"{self.name}: `{shlex.join(argv)}` exited with {result.code}: "
                              f"{_last_line(result.stderr, result.stdout)}")
        return result

    def remote_path(self, path: str) -> str:
        return path if posixpath.isabs(path) else posixpath.join(self.workdir, path)

    @abstractmethod
    def abi(self) -> str:
        """The device's Android ABI name (arm64-v8a, x86_64, ...): which runner build it executes."""

    @abstractmethod
    def install_bundle(self, folder: str | os.PathLike, digest: str, launcher: str) -> str:
        """Make a runner bundle folder (files plus SHA256SUMS; `digest` identifies it) available on the device
        and check that it starts; return the device path of its launcher script (run it with `sh`)."""

    def cooldown(self, seconds: float) -> None:
        """Let the SoC cool between timed runs (phones throttle within seconds of full load)."""
        if seconds > 0:
            time.sleep(seconds)


class LocalDevice(Device):
    """This machine. The work dir is a fresh temp folder (under `base`) unless `workdir` is given."""

    def __init__(self, workdir: str | os.PathLike | None = None, base: str | os.PathLike | None = None,
                 timeout: float = 600.0):
        self.timeout = timeout
        self.name = "local"
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="compkit-device-", dir=base)
        self.workdir = str(Path(workdir).resolve())
        if Path(self.workdir) in (Path("/"), Path.home()):
            raise DeviceError(f"refusing work dir {self.workdir}: cleanup() deletes it; pick a scratch folder")
        Path(self.workdir).mkdir(parents=True, exist_ok=True)

    def _run(self, cmd: list[str], timeout: float) -> RunResult:
        r = _call(cmd, timeout, f"local: `{shlex.join(cmd)}`", cwd=self.workdir)
        return RunResult(r.returncode, r.stdout, r.stderr)

    def _copy_verified(self, src: Path, dst: Path, what: str) -> None:
        want = sha256_file(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(str(dst)) as tmp:  # copy beside the target, verify, then rename
                shutil.copyfile(src, tmp)
                got = sha256_file(tmp)
                if got != want:
                    raise DeviceError(f"{what}: sha256 mismatch ({got[:12]} != {want[:12]}); check the disk and retry")
        except OSError as e:
            raise DeviceError(f"{what}: {e.strerror or e}; check free space and permissions") from None

    def push(self, local, remote=None) -> str:
        local = Path(local)
        if not local.is_file():
            raise DeviceError(f"cannot push {local}: no such local file")
        dest = self.remote_path(remote or local.name)
        self._copy_verified(local, Path(dest), f"local: push of {local} to {dest}")
        return dest

    def pull(self, remote, local) -> Path:
        src, local = Path(self.remote_path(remote)), Path(local)
        if local.is_dir():
            local = local / src.name
        if not src.is_file():
            raise DeviceError(f"local: cannot pull {src}: no such file on the device")
        self._copy_verified(src, local, f"local: pull of {src} to {local}")
        return local

    def info(self) -> dict:
        soc = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    soc = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {"kind": "local", "serial": platform.node(), "model": platform.node(), "soc": soc,
                "abi": platform.machine(), "cores": os.cpu_count(),
                "os": f"{platform.system()} {platform.release()}"}

    def abi(self) -> str:
        return host_abi()

    def install_bundle(self, folder, digest, launcher) -> str:
        path = Path(folder) / launcher
        _check_starts(self, str(path))
        return str(path)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class AdbDevice(Device):
    """A phone (or anything speaking the adb protocol) through the real `adb` binary."""

    def __init__(self, serial: str, adb: str | None = None, workdir: str = DEFAULT_REMOTE_WORKDIR,
                 timeout: float = 60.0, connect_timeout: float = 15.0):
        self.serial, self.name = serial, f"adb:{serial}"
        self.adb = adb or os.environ.get("ADB") or "adb"
        self.workdir, self.timeout, self.connect_timeout = workdir, timeout, connect_timeout
        if not posixpath.isabs(workdir):
            raise DeviceError(f"adb work dir must be an absolute device path, got {workdir!r}")
        if shutil.which(self.adb) is None:
            raise DeviceError(f"adb not found ({self.adb!r}): install Android platform-tools "
                              f"(Debian: apt-get install adb) or set $ADB to its path")
        self._connect()

    def _adb(self, *args: str, timeout: float, what: str) -> subprocess.CompletedProcess:
        return _call([self.adb, "-s", self.serial, *args], timeout, f"{self.name}: {what}")

    def state(self) -> str:
        r = self._adb("get-state", timeout=self.connect_timeout, what="get-state")
        return r.stdout.strip() if r.returncode == 0 else _last_line(r.stderr, r.stdout).removeprefix("error: ")

    def _connect(self) -> None:
        network = re.fullmatch(r"[^:\s]+:\d+", self.serial) is not None
        if network:  # exits 0 even when it fails: get-state below is the real check
            try:
                self._adb("connect", self.serial, timeout=self.connect_timeout, what="adb connect")
            except DeviceError:
                pass  # a device that never finishes the handshake: reported from its state below
        deadline = time.monotonic() + self.connect_timeout
        while (state := self.state()) != "device" and time.monotonic() < deadline:
            time.sleep(0.2)
        if state != "device":
            if network:  # stop the adb server from retrying a device we gave up on
                self._adb("disconnect", self.serial, timeout=self.connect_timeout, what="adb disconnect")
            raise DeviceError(f"{self.name} is not ready (state: {state}) after {self.connect_timeout:g} s; "
                              f"check `adb devices`, USB debugging and the authorization prompt on the phone")
        r = self._adb("features", timeout=self.connect_timeout, what="adb features")
        features = set(r.stdout.split())
        if "shell_v2" not in features:
            raise DeviceError(f"{self.name} lacks the shell_v2 feature (has: {', '.join(sorted(features)) or 'none'})"
                              f"; exit codes would be lost: use Android 7.0+ and a current adb")
        r = self._run(["mkdir", "-p", self.workdir], self.connect_timeout, cwd="/")
        if r.code != 0:
            raise DeviceError(f"{self.name}: cannot create work dir {self.workdir}: {_last_line(r.stderr)}; "
                              f"pick a writable workdir (e.g. under /data/local/tmp)")

    def _run(self, cmd: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        # `cd` first so relative paths mean workdir; the marker proves the command really ended
        script = (f"cd {shlex.quote(cwd or self.workdir)} && {shlex.join(cmd)}; "
                  f"__rc=$?; printf '\\n{_MARKER}%d\\n' $__rc >&2; exit $__rc")
        r = self._adb("shell", "-T", script, timeout=timeout, what=f"`{shlex.join(cmd)}`")
        done = _MARKER_RE.search(r.stderr)
        if done is None:
            raise DeviceError(f"{self.name}: lost the device while running `{shlex.join(cmd)}` "
                              f"(state now: {self.state()}; last output: {_last_line(r.stderr, r.stdout)}); "
                              f"reconnect it and rerun")
        if int(done.group(1)) != (r.returncode & 0xFF):
            raise DeviceError(f"{self.name}: adb reported exit {r.returncode} but the command exited "
                              f"{done.group(1)}; the device's shell_v2 is broken, update adb")
        return RunResult(r.returncode, r.stdout, r.stderr[:done.start()])

    def _transfer_timeout(self, size: int) -> float:
        return self.timeout + size / _MIN_TRANSFER_RATE

    def _remote_sha256(self, path: str, what: str) -> str:
        r = self.run(["sha256sum", path], timeout=self.timeout)
        digest = r.stdout.split()[0] if r.code == 0 and r.stdout.split() else ""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DeviceError(f"{what}: cannot hash {path} on the device: {_last_line(r.stderr, r.stdout)}")
        return digest

    def push(self, local, remote=None) -> str:
        local = Path(local)
        if not local.is_file():
            raise DeviceError(f"cannot push {local}: no such local file")
        dest = self.remote_path(remote or local.name)
        what = f"{self.name}: push of {local} to {dest}"
        want = sha256_file(local)
        r = self._adb("push", str(local), dest, timeout=self._transfer_timeout(local.stat().st_size), what=what)
        if r.returncode != 0:
            self._remove(dest)
            raise DeviceError(f"{what} failed: {_adb_error(r)}; check free space on the device "
                              f"(`adb shell df -h {posixpath.dirname(dest)}`) and that the path is writable")
        got = self._remote_sha256(dest, what)
        if got != want:
            self._remove(dest)
            raise DeviceError(f"{what}: sha256 mismatch (device {got[:12]} != local {want[:12]}); "
                              f"removed the device copy; check the connection and device storage, then retry")
        return dest

    def _remove(self, path: str) -> None:
        try:
            self.run(["rm", "-rf", path])
        except DeviceError:
            pass  # already failing; the caller's error says what went wrong first

    def pull(self, remote, local) -> Path:
        src, local = self.remote_path(remote), Path(local)
        if local.is_dir():
            local = local / posixpath.basename(src)
        what = f"{self.name}: pull of {src} to {local}"
        want = self._remote_sha256(src, what)
        size = self.run(["stat", "-c", "%s", src]).stdout.strip()
        timeout = self._transfer_timeout(int(size) if size.isdigit() else 0)
        local.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(str(local)) as tmp:  # pull beside the target, verify, then rename: a failed pull leaves nothing
            r = self._adb("pull", src, tmp, timeout=timeout, what=what)
            if r.returncode != 0:
                raise DeviceError(f"{what} failed: {_adb_error(r)}; check the file is readable on "
                                  f"the device and there is space here")
            got = sha256_file(tmp)
            if got != want:
                raise DeviceError(f"{what}: sha256 mismatch (local {got[:12]} != device {want[:12]}); "
                                  f"check the connection and retry")
        return local

    def info(self) -> dict:
        props = ["ro.product.model", "ro.soc.model", "ro.board.platform", "ro.product.cpu.abi",
                 "ro.build.version.release"]
        script = ("for p in " + " ".join(props) + "; do echo \"$(getprop $p)\"; done; "
                  "nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo")
        r = self.run(["sh", "-c", script], check=True)
        lines = r.stdout.splitlines()
        if len(lines) != len(props) + 1:
            raise DeviceError(f"{self.name}: unexpected device info output {r.stdout!r}; is this an Android device?")
        model, soc, board, abi, release, cores = (line.strip() for line in lines)
        return {"kind": "adb", "serial": self.serial, "model": model, "soc": soc or board, "abi": abi,
                "cores": int(cores) if cores.isdigit() else None, "os": f"Android {release}"}

    def abi(self) -> str:
        r = self.run(["sh", "-c", "getprop ro.product.cpu.abi 2>/dev/null; uname -m"], check=True)
        prop, _, machine = r.stdout.strip().rpartition("\n")
        return prop.strip() or abi_of_machine(machine)

    @property
    def bundle_root(self) -> str:
        """Runner bundles live beside the work dir: cleanup() clears the work dir, a bundle stays for the next run."""
        return self.workdir.rstrip("/") + "-bundles"

    def install_bundle(self, folder, digest, launcher) -> str:
        folder = Path(folder)
        sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
        remote = posixpath.join(self.bundle_root, digest[:16])
        if self._remote_sums(remote, sums) != sums:  # absent, partial or altered: push it whole, then rename
            partial = f"{remote}.partial"
            self.run(["rm", "-rf", remote, partial], check=True)
            try:
                for name in sorted(sums) + ["SHA256SUMS"]:
                    self.push(folder / name, posixpath.join(partial, name))  # each push is sha256-verified
                modes = [name for name in sums if os.access(folder / name, os.X_OK)]
                self.run(["chmod", "755", *(posixpath.join(partial, n) for n in modes)], check=True)
                self.run(["mv", partial, remote], check=True)
            except DeviceError:
                self._remove(partial)
                raise
        path = posixpath.join(remote, launcher)
        _check_starts(self, path)
        return path

    def _remote_sums(self, remote: str, sums: dict[str, str]) -> dict[str, str]:
        r = self.run(["sha256sum", *(posixpath.join(remote, n) for n in sorted(sums))])
        return {posixpath.basename(line.split()[1]): line.split()[0] for line in r.stdout.splitlines()
                if len(line.split()) == 2} if r.code == 0 else {}

    def cleanup(self) -> None:
        r = self._run(["rm", "-rf", self.workdir], self.timeout, cwd="/")
        if r.code != 0:
            raise DeviceError(f"{self.name}: cannot remove {self.workdir}: {_last_line(r.stderr)}")


def _check_starts(device: Device, launcher: str) -> None:
    """A bundle that cannot start (a missing loader, SELinux, a wrong ABI) fails here with its own stderr."""
    r = device.run(["sh", launcher, "--help"])
    if r.code != 0:
        raise DeviceError(f"{device.name}: the runner bundle does not start ({launcher} exited {r.code}): "
                          f"{_last_line(r.stderr, r.stdout)}")


def device_from_spec(spec: str, **kwargs) -> Device:
    """`local` or `adb:SERIAL` (as in `adb devices`, or HOST:PORT for a network device)."""
    if spec == "local":
        return LocalDevice(**kwargs)
    if spec.startswith("adb:") and spec[4:]:
        return AdbDevice(spec[4:], **kwargs)
    raise DeviceError(f"unknown device {spec!r}: use 'local' or 'adb:SERIAL' (serials from `adb devices`)")
