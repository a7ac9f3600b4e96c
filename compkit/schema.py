"""manifest.json's JSON Schema (compkit/manifest.schema.json, shipped in the package): export validates what it
writes, runtime_py what it reads, and tests/test_manifest_schema.py holds docs/ARTIFACTS.md to it."""
from __future__ import annotations

import functools
import json
import os

from .errors import CompkitError

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest.schema.json")


class ManifestSchemaError(CompkitError, ValueError):
    """A manifest that does not follow compkit/manifest.schema.json."""


@functools.lru_cache(maxsize=1)
def manifest_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = manifest_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def manifest_problems(manifest) -> list[str]:
    """Every way the manifest breaks the schema, as 'where: what' lines (empty when it is valid)."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors]


def validate_manifest(manifest, where: str = "manifest.json") -> None:
    """Raise ManifestSchemaError naming the first problem (and how many more) in one line."""
    problems = manifest_problems(manifest)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ManifestSchemaError(f"{where} breaks the manifest schema at {problems[0]}{more}: "
                                  "not a manifest this compkit wrote (docs/ARTIFACTS.md); rebuild with `python -m export.build`")
