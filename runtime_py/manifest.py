"""Reading, verifying and atomically rewriting a build folder's manifest.json (docs/ARTIFACTS.md)."""
from __future__ import annotations

import json
import os
import stat

from compkit.errors import CompkitError
from compkit.files import atomic_path, dumps_json
from compkit.files import sha256_path as artifact_sha256  # the build's own hashing, so the two always agree
from compkit.schema import ManifestSchemaError, manifest_schema, validate_manifest

MANIFEST = "manifest.json"
_REQUIRED = tuple(manifest_schema()["$defs"]["artifact"]["required"])  # the schema is the one list
ARTIFACT_SIDECARS = (".onnx.data",)  # external-data files an ONNX export can leave beside its .onnx


class ManifestError(CompkitError, ValueError):
    """A build folder or manifest that cannot be used; one line saying what is wrong and what to do."""


def read_manifest(build_dir) -> dict:
    build_dir = os.fspath(build_dir)
    path = os.path.join(build_dir, MANIFEST)
    if not os.path.isdir(build_dir):
        raise ManifestError(f"build folder not found: {build_dir}; pass a folder written by `python -m export.build`")
    if not os.path.isfile(path):
        raise ManifestError(f"no {MANIFEST} in {build_dir}: not a compkit build folder (run `python -m export.build`)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ManifestError(f"unreadable {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise ManifestError(f"{path} has no 'artifacts' list: not a compkit manifest (docs/ARTIFACTS.md)")
    if manifest.get("schema") != 1:
        raise ManifestError(f"{path} has schema {manifest.get('schema')!r}; this runtime reads schema 1")
    if manifest.get("complete") is False:  # absent: a build from before the mark existed (docs/RELIABILITY.md)
        why = f"it was {manifest['stopped']}" if manifest.get("stopped") else "the export was interrupted or crashed"
        raise ManifestError(f"{path} is marked incomplete ({why}): its artifacts cannot be trusted; "
                            "rebuild into a new folder with `python -m export.build`")
    if not isinstance(manifest.get("models"), dict):
        raise ManifestError(f"{path} has no 'models' table: not a compkit manifest (docs/ARTIFACTS.md)")
    for i, a in enumerate(manifest["artifacts"]):
        missing = [k for k in _REQUIRED if not isinstance(a, dict) or k not in a]
        if missing:
            raise ManifestError(f"{path}: artifact #{i} ({a.get('file') if isinstance(a, dict) else a!r}) lacks {missing}")
        if not _inside(a["file"]):
            raise ManifestError(f"{path}: artifact file {a['file']!r} is not a name inside the build folder; "
                                "the manifest is damaged or hostile: rebuild")
        if a["model"] not in manifest["models"]:
            raise ManifestError(f"{path}: artifact {a['file']} is of model {a['model']!r}, which 'models' does not describe")
    for name, info in manifest["models"].items():
        tok_dir = info.get("tokenizer_dir") if isinstance(info, dict) else None
        if tok_dir is not None and not _inside(tok_dir):
            raise ManifestError(f"{path}: models.{name}.tokenizer_dir {tok_dir!r} is not a name inside the build folder; rebuild")
    try:  # after the checks above, whose messages say more about the common damages
        validate_manifest(manifest, path)
    except ManifestSchemaError as e:
        raise ManifestError(str(e)) from None
    return manifest


def _inside(name) -> bool:
    """A plain file or folder name of the build folder itself: no path, nothing that climbs out of it."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and not os.path.isabs(name)


def stray_files(build_dir, manifest: dict) -> list[str]:
    """Artifact-like files and temp paths in the folder that the manifest does not list: what an interrupted
    export or a second writer leaves behind. Sorted names."""
    from export.backends import BACKENDS

    suffixes = tuple(dict.fromkeys(f".{b.extension}" for b in BACKENDS.values())) + ARTIFACT_SIDECARS
    listed = {a["file"] for a in manifest["artifacts"]}
    return sorted(n for n in os.listdir(os.fspath(build_dir)) if n not in listed
                  and (n.endswith(suffixes) or (n.startswith(".") and ".tmp-" in n)))


def verify_sha256(build_dir, manifest: dict) -> list[str]:
    """One line per artifact file that is missing or whose sha256 differs from the manifest; [] if all match.
    Artifacts that export disabled without writing a file are not expected on disk."""
    problems = []
    for a in manifest["artifacts"]:
        path = os.path.join(os.fspath(build_dir), a["file"])
        if not os.path.exists(path):
            if a.get("enabled", True):
                problems.append(f"{a['file']}: missing from {build_dir} (the manifest lists it); rebuild with `python -m export.build`")
            continue
        actual = artifact_sha256(path)
        if actual != a["sha256"]:
            problems.append(f"{a['file']}: sha256 {actual[:16]}... does not match the manifest's {str(a['sha256'])[:16]}...: "
                            "the file was changed or corrupted after the build; rebuild it or restore the original")
    return problems


def write_json_atomic(path, obj) -> None:
    """Write JSON (no NaN) to a temp path beside path, then rename: readers see the old file or the new, never half."""
    write_text_atomic(path, dumps_json(obj))


def write_text_atomic(path, text: str) -> None:
    """compkit.files' atomic write, except that a file replaced keeps its mode (a new one gets the umask's)."""
    path = os.fspath(path)
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
