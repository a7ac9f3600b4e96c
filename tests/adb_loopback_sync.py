"""The `sync:` service of the loopback adb device (adb push, pull, ls).

Written from AOSP's SYNC.TXT and file_sync_protocol.h. Every request is an 8-byte header (a
4-letter id, a little-endian uint32 length) and `length` bytes of path. STAT answers with
stat_v1 {id, mode, size, mtime}; STA2/LST2 with stat_v2 {id, error, dev, ino, mode, nlink, uid,
gid, size, atime, mtime, ctime}; LIST with dent_v1 {id, mode, size, mtime, namelen} + name per
entry, LIS2 with dent_v2 (stat_v2 + namelen), both ended by a DONE of the same size. SEND's path
is "PATH,MODE" (mode in decimal), followed by DATA chunks of at most 64 KiB and DONE(mtime); the
answer is OKAY or FAIL(message). RECV answers with DATA chunks then DONE, or FAIL. QUIT ends.
"""
from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Callable

SYNC_DATA_MAX = 64 * 1024
_STAT_V1, _STAT_V2 = struct.Struct("<4sIII"), struct.Struct("<4sIQQIIIIQqqq")
_DENT_V1, _DENT_V2 = struct.Struct("<4sIIII"), struct.Struct("<4sIQQIIIIQqqqI")


def flip_a_byte(data: bytes) -> bytes:
    if not data:
        return data
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def serve_sync(stream, host_path: Callable[[str], Path], faults) -> None:
    """Answer sync requests on `stream` (read_exact/write) until QUIT; paths map through host_path."""
    while True:
        request, length = struct.unpack("<4sI", stream.read_exact(8))
        if request == b"QUIT":
            return
        arg = stream.read_exact(length).decode("utf-8", "surrogateescape")
        if request == b"SEND":
            path, _, mode = arg.rpartition(",")
            _send(stream, path, host_path(path), mode, faults)
        elif request == b"RECV":
            _recv(stream, arg, host_path(arg), faults)
        elif request in (b"STAT", b"STA2", b"LST2"):
            stream.write(_stat_reply(request, host_path(arg)))
        elif request in (b"LIST", b"LIS2"):
            stream.write(_list_reply(request == b"LIS2", host_path(arg)))
        else:
            _fail(stream, f"unknown sync request {request!r}")
            return


def _send(stream, path: str, target: Path, mode: str, faults) -> None:
    error, written, out = faults.sync_fail, 0, None
    if error is None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # what fixed_push_mkdir promises
            target.unlink(missing_ok=True)
            out = open(target, "wb")
        except OSError as e:
            error = f"{e.strerror}: {path}"
    while True:  # read to DONE even after a failure so the stream stays in step with the host
        request, length = struct.unpack("<4sI", stream.read_exact(8))
        if request == b"DONE":
            mtime = length
            break
        if request != b"DATA" or length > SYNC_DATA_MAX:
            _fail(stream, f"bad sync data message {request!r} of {length} bytes")
            raise ConnectionError("sync stream out of step")
        data = stream.read_exact(length)
        if out is not None and error is None:
            if faults.disk_free is not None and written + length > faults.disk_free:
                error = os.strerror(errno.ENOSPC)
            else:
                out.write(data)
                written += length
    if out is not None:
        out.close()
        if error is not None:
            target.unlink(missing_ok=True)  # like adbd: no partial file after a failed SEND
    if error is not None:
        _fail(stream, error)
        return
    if faults.corrupt_push:
        target.write_bytes(flip_a_byte(target.read_bytes()))
    os.chmod(target, int(mode) & 0o777 if mode.isdigit() else 0o644)
    os.utime(target, (mtime, mtime))
    stream.write(struct.pack("<4sI", b"OKAY", 0))


def _recv(stream, path: str, source: Path, faults) -> None:
    if faults.sync_fail is not None:
        _fail(stream, faults.sync_fail)
        return
    try:
        f = open(source, "rb")
    except OSError as e:
        _fail(stream, f"{e.strerror}: {path}")
        return
    with f:
        first = True
        while chunk := f.read(SYNC_DATA_MAX):
            if first and faults.corrupt_pull:
                chunk = flip_a_byte(chunk)
            first = False
            stream.write(struct.pack("<4sI", b"DATA", len(chunk)) + chunk)
    stream.write(struct.pack("<4sI", b"DONE", 0))


def _v2_fields(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def _stat_reply(request: bytes, path: Path) -> bytes:
    try:
        st = os.stat(path) if request == b"STA2" else os.lstat(path)
    except OSError as e:
        if request == b"STAT":
            return _STAT_V1.pack(b"STAT", 0, 0, 0)  # v1 can only say "nothing there"
        return _STAT_V2.pack(request, e.errno, *([0] * 10))
    if request == b"STAT":
        return _STAT_V1.pack(b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
    return _STAT_V2.pack(request, 0, *_v2_fields(st))


def _list_reply(v2: bool, path: Path) -> bytes:
    out = []
    try:
        names = [".", ".."] + sorted(os.listdir(path))
    except OSError:
        names = []
    for name in names:
        try:
            st = os.lstat(path / name)
        except OSError:
            continue
        raw = name.encode("utf-8", "surrogateescape")
        if v2:
            out.append(_DENT_V2.pack(b"DNT2", 0, *_v2_fields(st), len(raw)) + raw)
        else:
            out.append(_DENT_V1.pack(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF,
                                     int(st.st_mtime), len(raw)) + raw)
    done = _DENT_V2.pack(b"DONE", *([0] * 12)) if v2 else _DENT_V1.pack(b"DONE", 0, 0, 0, 0)
    return b"".join(out) + done


def _fail(stream, message: str) -> None:
    raw = message.encode()
    stream.write(struct.pack("<4sI", b"FAIL", len(raw)) + raw)
