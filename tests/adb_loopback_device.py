"""A loopback adb *device* (the adbd side) that the real `adb` talks to over TCP.

There is no phone here, so the adb tests connect Debian's real adb client and server to this
daemon with `adb connect 127.0.0.1:PORT`. It is written from AOSP's public protocol documents:
protocol.txt (24-byte little-endian message header, CNXN/OPEN/OKAY/WRTE/CLSE, one WRTE in flight
per stream until the peer's OKAY), SERVICES.TXT (service names), SYNC.TXT plus file_sync_protocol.h
(sync requests and the stat_v2/dent_v2 structs) and shell_protocol.h (shell v2 packets: one id
byte, a 4-byte length, the data; ids 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 close-stdin,
5 window size).

What it implements, and so the only features it advertises: shell_v2, stat_v2, ls_v2,
fixed_push_mkdir. Services: `shell[,v2][,raw|pty][,TERM=..]:CMD`, `exec:CMD`, `sync:` with
STAT, STA2, LST2, LIST, LIS2, SEND, RECV and QUIT (in adb_loopback_sync.py). No AUTH (like an emulator or a userdebug build
with auth off). Protocol version 0x01000000 by default, so the host computes and checks payload
checksums both ways.

Sandbox mapping: device path P is the host path SANDBOX/P (`sandbox` attribute), for sync and
for shell commands alike. Shell commands run on this host as `/bin/sh -c CMD` with cwd SANDBOX
(the device's "/") and SANDBOX/system/bin first on PATH, which holds a `getprop` script answering
from `props`. Inside command text, "/data/local/tmp" is rewritten to SANDBOX/data/local/tmp, and
SANDBOX/data/local/tmp is rewritten back in stdout and stderr, so commands and their output
speak device paths. Other absolute paths in command text are host paths.

arm64 mode (`arm64=True`) plays an arm64 phone on this x86-64 host: getprop says arm64-v8a (and the model
string says the device is emulated, so benchmark reports say so), and every shell command runs with
loopback_emu/qemu_exec_shim.c preloaded, which puts `qemu-aarch64 -cpu max,sme=off` in front of any
aarch64 ELF a command starts. Like a phone, it has no /lib/ld-linux-aarch64.so.1: a glibc program must
bring its own loader. The code under test sees an adb device and nothing else.

Fault switches (`Faults`) make it misbehave the ways a phone can: never answer CNXN, die in the
middle of a shell command, answer SEND/RECV with FAIL, run out of disk on SEND, corrupt data.
"""
from __future__ import annotations

import os
import posixpath
import queue
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from adb_loopback_sync import serve_sync

A_CNXN, A_OPEN, A_OKAY = 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE = 0x45534C43, 0x45545257
A_VERSION = 0x01000000  # below 0x01000001 both sides must send and check payload checksums
A_VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 256 * 1024
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4
FEATURES = ("shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir")
DEVICE_TMP = "/data/local/tmp"
SHIM_SOURCE = Path(__file__).resolve().parent / "loopback_emu" / "qemu_exec_shim.c"
ARM64_PROPS = {
    "ro.product.model": "Loopback arm64 emulated by qemu-user (timings meaningless)",  # no ; , : (banner)
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a",
    "ro.soc.model": "qemu-aarch64 max,sme=off",
}

DEFAULT_PROPS = {
    "ro.product.name": "loopback",
    "ro.product.model": "Loopback Phone",
    "ro.product.device": "loopback",
    "ro.soc.model": "LOOP8000",
    "ro.board.platform": "loopboard",
    "ro.product.cpu.abi": "x86_64",  # runs this host's binaries, like an x86_64 emulator; arm64=True for a phone
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
}


@dataclass
class Faults:
    no_cnxn: bool = False  # accept the TCP connection, read the host's CNXN, never answer
    die_on: str | None = None  # a shell command containing this text kills the device once it has printed
    sync_fail: str | None = None  # answer every SEND and RECV with FAIL and this message
    disk_free: int | None = None  # bytes SEND may write before FAIL "No space left on device"
    corrupt_push: bool = False  # flip one byte of every file SEND writes
    corrupt_pull: bool = False  # flip one byte of what RECV sends


class _Closed(Exception):
    """The stream or the whole connection went away."""


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


class _Stream:
    """One OPEN'd stream: an inbox for the host's WRTEs and flow-controlled writes back."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.ready = threading.Event()
        self.ready.set()  # protocol.txt: an OPEN implies a READY from the opener
        self.closed = threading.Event()
        self._write_lock = threading.Lock()
        self._buf = b""

    def write(self, data: bytes) -> None:
        with self._write_lock:
            for i in range(0, len(data), self.conn.max_payload):
                self.ready.wait()
                if self.closed.is_set():
                    raise _Closed
                self.ready.clear()  # one WRTE in flight until the host's OKAY
                self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])

    def read_some(self) -> bytes:
        if self._buf:
            data, self._buf = self._buf, b""
            return data
        data = self.inbox.get()
        if data is None:
            self.inbox.put(None)  # keep later readers unblocked too
            return b""
        return data

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            data = self.inbox.get()
            if data is None:
                self.inbox.put(None)
                raise _Closed
            self._buf += data
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def peer_closed(self) -> None:
        self.closed.set()
        self.ready.set()
        self.inbox.put(None)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.peer_closed()
        self.conn.streams.pop(self.local_id, None)
        try:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        except OSError:
            pass


class _Connection:
    """One TCP connection from the adb server: handshake, then demultiplex streams."""

    def __init__(self, device: LoopbackAdbDevice, sock: socket.socket):
        self.device, self.sock = device, sock
        self.version = A_VERSION_SKIP_CHECKSUM  # until CNXN is exchanged nothing is checksummed
        self.max_payload = 4096
        self.streams: dict[int, _Stream] = {}
        self._send_lock = threading.Lock()
        self._next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        check = _checksum(data) if self.version < A_VERSION_SKIP_CHECKSUM else 0
        header = struct.pack("<6I", command, arg0, arg1, len(data), check, command ^ 0xFFFFFFFF)
        with self._send_lock:
            self.sock.sendall(header + data)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Closed
            buf += chunk
        return buf

    def recv(self) -> tuple[int, int, int, bytes]:
        command, arg0, arg1, length, check, magic = struct.unpack("<6I", self._recv_exact(24))
        # protocol.txt: an invalid header or corrupt payload MUST close the connection
        if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
            raise _Closed
        data = self._recv_exact(length)
        if self.version < A_VERSION_SKIP_CHECKSUM and check != _checksum(data):
            raise _Closed
        return command, arg0, arg1, data

    def serve(self) -> None:
        try:
            while True:  # messages before CNXN MUST be ignored
                command, arg0, arg1, _ = self.recv()
                if command == A_CNXN:
                    break
            if self.device.faults.no_cnxn:
                while self.sock.recv(65536):
                    pass
                return
            self.version = min(arg0, self.device.version)
            self.max_payload = min(arg1, MAX_PAYLOAD)
            self.send(A_CNXN, self.device.version, MAX_PAYLOAD, self.device.banner().encode())
            while True:
                self._dispatch(*self.recv())
        except (_Closed, OSError, struct.error):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.peer_closed()
            self.sock.close()

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_OPEN:
            service = self.device.service(data.rstrip(b"\0").decode("utf-8", "replace"))
            if service is None:
                self.send(A_CLSE, 0, arg0)  # local-id 0: the OPEN failed
                return
            stream = _Stream(self, self._next_id, arg0)
            self._next_id += 1
            self.streams[stream.local_id] = stream
            self.send(A_OKAY, stream.local_id, arg0)
            threading.Thread(target=self._run_service, args=(service, stream), daemon=True).start()
        elif command == A_OKAY:
            if (stream := self.streams.get(arg1)) is not None:
                stream.ready.set()
        elif command == A_WRTE:
            if (stream := self.streams.get(arg1)) is not None:
                stream.inbox.put(data)
                self.send(A_OKAY, arg1, arg0)
        elif command == A_CLSE:
            if (stream := self.streams.pop(arg1, None)) is not None:
                stream.peer_closed()

    def _run_service(self, service, stream: _Stream) -> None:
        try:
            service(stream)
        except (_Closed, OSError):
            pass
        finally:
            stream.close()


@dataclass
class LoopbackAdbDevice:
    """Listens on 127.0.0.1:<ephemeral>; `serial` is what to give `adb connect` and `adb -s`."""

    props: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPS))
    faults: Faults = field(default_factory=Faults)
    version: int = A_VERSION
    features: tuple[str, ...] = FEATURES  # advertise fewer to play an old adbd
    arm64: bool = False  # play an arm64 phone: aarch64 programs run under qemu-user

    def __post_init__(self):
        self.sandbox = Path(tempfile.mkdtemp(prefix="adb-loopback-"))
        (self.sandbox / DEVICE_TMP.lstrip("/")).mkdir(parents=True)
        self._emu_env = {}
        if self.arm64:
            self.props = {**self.props, **ARM64_PROPS}
            self._emu_env = self._build_emulation()
        self._write_getprop()
        self._procs: set[subprocess.Popen] = set()
        self._conns: set[socket.socket] = set()
        self._dead = threading.Event()
        while True:  # adb servers scan 5555-5585 for emulators: stay out of that range
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.port = self._listener.getsockname()[1]
            if not 5555 <= self.port <= 5585:
                break
            self._listener.close()
        self.serial = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def __enter__(self) -> LoopbackAdbDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.die()
        shutil.rmtree(self.sandbox, ignore_errors=True)

    def die(self) -> None:
        """Vanish like an unplugged phone: stop listening, drop every connection, kill children."""
        self._dead.set()
        for sock in [self._listener, *list(self._conns)]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for proc in list(self._procs):
            _kill(proc)

    def banner(self) -> str:
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        props = "".join(f"{k}={self.props.get(k, '')};" for k in keys)
        return f"device::{props}features={','.join(self.features)}"

    def host_path(self, device_path: str) -> Path:
        # normpath keeps ".." from climbing out of the sandbox ("/../x" is "/x")
        return self.sandbox / posixpath.normpath("/" + device_path).lstrip("/")

    def _accept_loop(self) -> None:
        while not self._dead.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._conns.add(sock)
            threading.Thread(target=_Connection(self, sock).serve, daemon=True).start()

    def _write_getprop(self) -> None:
        lines = "".join(f"  {shlex.quote(k)}) echo {shlex.quote(v)} ;;\n" for k, v in self.props.items())
        dump = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        script = (f'#!/bin/sh\ncase "$1" in\n  "") printf %s {shlex.quote(dump)} ;;\n'
                  f"{lines}  *) echo ;;\nesac\n")
        path = self.sandbox / "system/bin/getprop"
        path.parent.mkdir(parents=True)
        path.write_text(script)
        path.chmod(0o755)

    def _build_emulation(self) -> dict[str, str]:
        qemu, cc = shutil.which("qemu-aarch64"), shutil.which("cc") or shutil.which("gcc")
        if qemu is None or cc is None:
            raise RuntimeError("arm64 mode needs qemu-aarch64 and a C compiler: apt-get install qemu-user gcc")
        shim = self.sandbox / "loopback-emu" / "qemu_exec_shim.so"  # outside the device's /data
        shim.parent.mkdir()
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM_SOURCE), "-ldl"],
                       check=True, capture_output=True)
        return {"LD_PRELOAD": str(shim), "LOOPBACK_QEMU": qemu, "LOOPBACK_QEMU_CPU": "max,sme=off"}

    # --- services -----------------------------------------------------------------------------

    def service(self, name: str):
        if name == "sync:":
            return lambda stream: serve_sync(stream, self.host_path, self.faults)
        head, sep, command = name.partition(":")
        kind, *args = head.split(",")
        if not sep or kind not in ("shell", "exec") or not command:
            return None  # interactive shells and other services are not implemented
        v2 = kind == "shell" and "v2" in args
        return lambda stream: self._shell(stream, command, v2=v2)

    def _shell(self, stream: _Stream, command: str, *, v2: bool) -> None:
        tmp_host = str(self.sandbox) + DEVICE_TMP
        env = dict(os.environ, PATH=f"{self.sandbox}/system/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   **self._emu_env)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command.replace(DEVICE_TMP, tmp_host)], cwd=self.sandbox, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,  # without v2 adbd merges stderr
            start_new_session=True)
        self._procs.add(proc)
        printed = threading.Event()

        def pump(pipe, packet_id: int) -> None:
            try:
                while chunk := os.read(pipe.fileno(), 65536):
                    chunk = chunk.replace(tmp_host.encode(), DEVICE_TMP.encode())
                    stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk if v2 else chunk)
                    printed.set()
            except _Closed:
                _kill(proc)  # the host went away: do not leave the command running
            finally:
                printed.set()

        pumps = [threading.Thread(target=pump, args=(proc.stdout, SHELL_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=pump, args=(proc.stderr, SHELL_STDERR), daemon=True))
        for t in pumps:
            t.start()
        threading.Thread(target=self._feed_stdin, args=(stream, proc, v2), daemon=True).start()
        if self.faults.die_on and self.faults.die_on in command:
            printed.wait()
            self.die()
            return
        for t in pumps:
            t.join()
        code = proc.wait()
        self._procs.discard(proc)
        if v2:
            stream.write(struct.pack("<BIB", SHELL_EXIT, 1, code & 0xFF))

    @staticmethod
    def _feed_stdin(stream: _Stream, proc: subprocess.Popen, v2: bool) -> None:
        try:
            while True:
                if v2:
                    packet_id, length = struct.unpack("<BI", stream.read_exact(5))
                    data = stream.read_exact(length)
                    if packet_id == SHELL_CLOSE_STDIN:
                        proc.stdin.close()
                        continue
                    if packet_id != SHELL_STDIN:
                        continue  # window-size changes mean nothing without a pty
                else:
                    data = stream.read_some()
                    if not data:
                        break
                if not proc.stdin.closed:
                    proc.stdin.write(data)
                    proc.stdin.flush()
        except (_Closed, OSError, ValueError):
            pass
        if stream.closed.is_set() and proc.poll() is None:
            _kill(proc)  # the host closed the stream while the command ran
        try:
            proc.stdin.close()
        except OSError:
            pass


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


__all__ = ["LoopbackAdbDevice", "Faults", "DEFAULT_PROPS", "ARM64_PROPS", "FEATURES"]
