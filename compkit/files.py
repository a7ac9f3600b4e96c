"""Atomic writes: every artifact appears whole or not at all (temp path in the same folder, then os.replace)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

_LIVE: set[str] = set()  # temp folders of writes in progress in this process, removed by remove_live_temps()


@contextlib.contextmanager
def atomic_path(out_path: str, directory: bool = False):
    """Yield a temp path beside out_path; on success it is renamed onto out_path, on error removed."""
    out_path = os.path.abspath(out_path)
    parent, name = os.path.split(out_path)
    tmp_dir = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    tmp = os.path.join(tmp_dir, name)
    _LIVE.add(tmp_dir)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"nothing was written to {tmp}")
        if os.path.isdir(out_path) and directory:
            shutil.rmtree(out_path)  # os.replace cannot replace a non-empty directory
        os.replace(tmp, out_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        _LIVE.discard(tmp_dir)


def remove_live_temps() -> None:
    """Remove the temp paths of writes still in progress: for a process that must exit at once (a signal)
    without unwinding, so a stopped export leaves no half-written file behind."""
    for d in list(_LIVE):
        shutil.rmtree(d, ignore_errors=True)
        _LIVE.discard(d)


def write_bytes(out_path: str, data: bytes) -> None:
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(out_path: str, text: str) -> None:
    write_bytes(out_path, text.encode("utf-8"))


def dumps_json(obj, indent: int | None = 2) -> str:
    """JSON as compkit writes it: NaN and infinity are refused (they are not JSON; a reader in another
    language rejects them), keys in the order given."""
    return json.dumps(obj, indent=indent, allow_nan=False) + "\n"


def write_json(out_path: str, obj, indent: int | None = 2) -> None:
    write_text(out_path, dumps_json(obj, indent))


def sha256_path(path: str) -> str:
    """sha256 of a file, or of a directory (an .mlpackage) over its relative paths and contents, sorted."""
    h = hashlib.sha256()
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).replace(os.sep, "/").encode() + b"\0")
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def size_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
