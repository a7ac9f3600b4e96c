"""The backend registry: name -> Backend (export/backend.py), one file per backend. A new backend is a new file
with a BACKEND object, listed here (or `register()`ed by a plugin or a test)."""
from __future__ import annotations

from . import coreml_export, executorch_coreml, executorch_xnnpack, onnx_export
from .backend import Backend, UnknownBackend

BACKENDS: dict[str, Backend] = {m.BACKEND.name: m.BACKEND
                                for m in (executorch_xnnpack, executorch_coreml, onnx_export, coreml_export)}


def register(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownBackend(f"unknown backend {name!r}: one of {', '.join(BACKENDS)}")
    return BACKENDS[name]
