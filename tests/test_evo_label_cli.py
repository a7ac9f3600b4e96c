import json

import pytest
import torch

from compressors import evo_label_cli
from tiny_llava import save_tiny_llava

pytestmark = pytest.mark.slow  # tiny LLaVA label searches and trainings: ~20-60 s on 2 cores

FAST = ["--population", "6", "--parents", "2", "--generations", "2"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def run(capsys, *args):
    code = evo_label_cli.main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def rows(path):
    lines = path.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]]


def test_labels_one_per_group_and_resume(ckpt, tmp_path, capsys):
    mllm, data = ckpt
    out = tmp_path / "labels.jsonl"
    assert run(capsys, "--mllm", mllm, "--data", data, "--out", out, "--limit", 2, *FAST)[0] == 0
    header, done = rows(out)
    assert header["format"] == evo_label_cli.FORMAT and [r["index"] for r in done] == [0, 1]
    for r in done:
        mask, groups = torch.tensor(r["mask"]).bool(), torch.tensor(r["groups"])
        assert len(mask) == 16 and all(int(mask[groups == g].sum()) == 1 for g in groups.unique())
        assert r["forwards"] == 6 * 3 and r["loss"] <= r["all_tokens_loss"] + 10
    # a torn last line is cut off and that sample redone; finished ones are skipped
    out.write_text(out.read_text() + '{"index": 2, "mask": [1,')
    assert run(capsys, "--mllm", mllm, "--data", data, "--out", out, *FAST)[0] == 0
    _, again = rows(out)
    assert [r["index"] for r in again] == [0, 1, 2] and again[:2] == done
    # a fresh run from scratch gives the same labels (seeded)
    out2 = tmp_path / "again.jsonl"
    run(capsys, "--mllm", mllm, "--data", data, "--out", out2, *FAST)
    assert [r["mask"] for r in rows(out2)[1]] == [r["mask"] for r in again]


def test_foreign_label_files_are_refused(ckpt, tmp_path, capsys):
    mllm, data = ckpt
    out = tmp_path / "labels.jsonl"
    run(capsys, "--mllm", mllm, "--data", data, "--out", out, "--limit", 1, *FAST)
    before = out.read_text()
    code, err = run(capsys, "--mllm", mllm, "--data", data, "--out", out, "--limit", 1, "--population", "8", "--parents", "2", "--generations", "2")
    assert code == 2 and "another configuration" in err and "population" in err and "\n" not in err
    other, _ = save_tiny_llava(tmp_path / "other", seed=1)
    code, err = run(capsys, "--mllm", other, "--data", data, "--out", out, *FAST)
    assert code == 2 and "another model" in err
    assert out.read_text() == before


def test_bad_inputs_get_one_line_errors(ckpt, tmp_path, capsys):
    mllm, data = ckpt
    out = tmp_path / "l.jsonl"
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "corrupt.jsonl").write_text('{"image": "img0.png"}\n')
    bad_img = tmp_path / "bad.jsonl"
    (tmp_path / "broken.png").write_bytes(b"not a png")
    bad_img.write_text(json.dumps({"image": "broken.png", "question": "w10", "answer": "w20"}) + "\n")
    from transformers import BertConfig
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path / "bert")
    cases = [
        (["--data", tmp_path / "empty.jsonl"], "no samples"),
        (["--data", tmp_path / "corrupt.jsonl"], "line 1"),
        (["--data", bad_img], "unreadable image"),
        (["--data", data, "--mllm", tmp_path / "bert"], "not LLaVA"),
        (["--data", data, "--prompt", "{question}"], "image token exactly once"),
    ]
    for extra, msg in cases:
        args = ["--mllm", mllm, "--out", out, *FAST] + extra
        code, err = run(capsys, *args)
        assert code == 2 and msg in err and "\n" not in err, (extra, err)
    out.write_text("not json\n")
    code, err = run(capsys, "--mllm", mllm, "--data", data, "--out", out, *FAST)
    assert code == 2 and "not an EvoComp label file" in err
