"""manifest.json's JSON Schema: it is a valid schema, real builds follow it, broken manifests are refused in one
line by the reader and the writer, and docs/ARTIFACTS.md documents exactly its fields."""
import copy
import json
import os
import re
import sys

import pytest

from compkit.schema import ManifestSchemaError, manifest_problems, manifest_schema, validate_manifest

sys.path.insert(0, os.path.dirname(__file__))
import tiny_build  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "ARTIFACTS.md")


@pytest.fixture(scope="module")
def build(bert_dir, tmp_path_factory):
    d = tiny_build.make_tiny_build(str(tmp_path_factory.mktemp("schema") / "build"), onnx_buckets=(32,))
    with open(os.path.join(d, "manifest.json"), encoding="utf-8") as f:
        return d, json.load(f)


def schema_fields() -> dict[str, set[str]]:
    s = manifest_schema()
    return {"top": set(s["properties"]), "model": set(s["properties"]["models"]["additionalProperties"]["properties"]),
            "artifact": set(s["$defs"]["artifact"]["properties"])}


def test_the_schema_is_a_valid_2020_12_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(manifest_schema())


def test_a_real_build_follows_it(build):
    assert manifest_problems(build[1]) == []


@pytest.mark.parametrize("damage, where", [
    (lambda m: m["artifacts"][0].pop("sha256"), "'sha256' is a required property"),
    (lambda m: m["artifacts"][0].update(file="../x.onnx"), "artifacts/0/file"),
    (lambda m: m["artifacts"][0]["input_spec"].update(input_ids=[[1, 32], "int8"]), "artifacts/0/input_spec/input_ids"),
    (lambda m: m["artifacts"][0].update(colour="blue"), "'colour' was unexpected"),
    (lambda m: m.update(schema=2), "schema"),
    (lambda m: m["models"]["moos"].pop("provenance"), "models/moos"),
])
def test_a_broken_manifest_is_one_line_naming_the_field(build, damage, where):
    m = copy.deepcopy(build[1])
    damage(m)
    with pytest.raises(ManifestSchemaError) as e:
        validate_manifest(m)
    assert where in str(e.value) and "\n" not in str(e.value)


def test_the_reader_refuses_what_breaks_the_schema(build, tmp_path):
    from runtime_py.manifest import ManifestError, read_manifest

    d = tmp_path / "b"
    d.mkdir()
    m = copy.deepcopy(build[1])
    m["artifacts"][0]["bucket"] = "large"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises((ManifestError, ManifestSchemaError), match="artifacts/0/bucket"):
        read_manifest(d)


def test_the_writer_refuses_what_breaks_the_schema(build, tmp_path):
    from export.build import write_manifest

    m = copy.deepcopy(build[1])
    m["artifacts"][0]["output_names"] = "keep_prob"
    with pytest.raises(ManifestSchemaError, match="output_names"):
        write_manifest(str(tmp_path), m)
    assert not (tmp_path / "manifest.json").exists()


def test_artifacts_md_documents_exactly_the_schema_fields():
    doc = open(DOC, encoding="utf-8").read()
    fields = schema_fields()
    documented = set(re.findall(r"`([a-z_0-9]+)`", doc))
    for kind, names in fields.items():
        missing = sorted(names - documented)
        assert not missing, f"docs/ARTIFACTS.md does not document the {kind} fields {missing}"
    # the field tables name only schema fields, and the example shows only schema fields
    rows = set(re.findall(r"^\| `([a-z_0-9]+)`", doc, flags=re.M))
    all_fields = set().union(*fields.values())
    assert rows and rows <= all_fields, sorted(rows - all_fields)
    example = doc.split("## manifest.json", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    keys = set(re.findall(r'"([a-z_0-9]+)":', example))
    inner = {"python", "torch", "executorch", "onnxruntime", "onnx", "coremltools", "transformers",  # tool_versions
             "moos", "evo", "input_ids", "attention_mask",  # models / input_spec keys
             "delegated_nodes", "non_delegated_nodes", "partitions", "non_delegated_ops", "aten"}  # delegation
    assert keys - inner <= all_fields, sorted(keys - inner - all_fields)
