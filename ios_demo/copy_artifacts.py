"""Copy one `python -m export.build --target ios` folder into ios_demo/Artifacts (bundled by project.yml).

    python ios_demo/copy_artifacts.py artifacts/20261126-150000-ios

Takes manifest.json, vectors.json (+ its .evo.bin), moos_tokenizer/ and every enabled Core ML (.mlpackage)
and ExecuTorch Core ML (.pte) artifact the manifest lists. Standard library only; the copy is written beside
the destination and swapped in, so a failure never leaves half a folder.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("coreml", "etcoreml")
ALWAYS = ("manifest.json", "moos_tokenizer")
IF_PRESENT = ("vectors.json", "vectors.json.evo.bin")


def plan(build_dir: str) -> list[str]:
    """The names to copy, or SystemExit with a one-line reason."""
    manifest_path = os.path.join(build_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise SystemExit(f"error: no manifest.json in {build_dir}: run `python -m export.build --target ios` and pass its folder")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except ValueError:
        raise SystemExit(f"error: {manifest_path} is not valid JSON: rerun export.build") from None
    if manifest.get("complete") is False:  # an interrupted export (docs/RELIABILITY.md); absent in older builds
        why = f"it was {manifest['stopped']}" if manifest.get("stopped") else "the export was interrupted or crashed"
        raise SystemExit(f"error: {manifest_path} is marked incomplete ({why}): rebuild into a new folder with export.build")
    if manifest.get("target") != "ios":
        raise SystemExit(f"error: {manifest_path} was built for target {manifest.get('target')!r}, not ios: rebuild with --target ios")
    enabled = [a["file"] for a in manifest.get("artifacts", []) if a.get("enabled") and a.get("backend") in BACKENDS]
    if not any(a.get("model") == "moos" and a.get("enabled") and a.get("backend") in BACKENDS for a in manifest.get("artifacts", [])):
        raise SystemExit(f"error: {manifest_path} lists no enabled MOOSComp Core ML artifact: check its disabled_reason fields")
    names = list(ALWAYS) + enabled
    missing = [n for n in names if not os.path.exists(os.path.join(build_dir, n))]
    if missing:
        raise SystemExit(f"error: {build_dir} is incomplete, missing {', '.join(missing)}: rerun export.build")
    return names + [n for n in IF_PRESENT if os.path.exists(os.path.join(build_dir, n))]


def copy(build_dir: str, dest: str) -> list[str]:
    names = plan(build_dir)
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in names:
        src = os.path.join(build_dir, name)
        (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(tmp, name))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build_dir", help="an export.build --target ios folder")
    ap.add_argument("--dest", default=os.path.join(HERE, "Artifacts"))
    a = ap.parse_args(argv)
    names = copy(a.build_dir, a.dest)
    print(f"copied {len(names)} entries into {a.dest}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
