"""compressors.train_moos: CE + beta * S fine-tuning of a token classifier, its outputs and its refusals."""
import json
import os
import random

import pytest

from checkpoints import make_bert, make_bert_model_only
from compressors import train_moos as tm
from compressors.moos import MOOSCompressor

KEEP = ["alpha", "delta", "kilo", "oscar", "sierra", "7", "42", "1999"]
DROP = ["the", "a", "of", "and", "so", "very", "just", "then", "is", "it"]


def synthetic(path, n, seed):
    """A learnable rule: a word is kept iff it is one of KEEP (names and numbers), whatever its place."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            words = [rng.choice(KEEP if rng.random() < 0.35 else DROP) for _ in range(rng.randint(6, 30))]
            f.write(json.dumps({"words": words, "labels": [int(w in KEEP) for w in words]}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train_moos")
    return {"train": synthetic(d / "train.jsonl", 160, 0), "eval": synthetic(d / "eval.jsonl", 40, 1),
            "base": make_bert(str(d / "tiny-bert"), hidden=64, layers=2), "dir": d}


def _cfg(data, out, **kw):
    base = dict(train=data["train"], eval=data["eval"], out=str(data["dir"] / out), base=data["base"], epochs=3,
                lr=3e-3, batch_size=16, seed=0, threads=2)
    return tm.TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(data):
    ce = tm.train(_cfg(data, "ce", beta=0.0), progress=False)
    cos = tm.train(_cfg(data, "cos", beta=1.0), progress=False)
    return ce, cos


@pytest.mark.slow
def test_learns_the_rule_and_the_cosine_term_lowers_S(trained):
    ce, cos = trained
    assert ce["history"][0]["token_accuracy"] < 0.8  # the random head does not know the rule
    for m in (ce, cos):
        assert m["best"]["token_accuracy"] > 0.95 and m["best"]["keep_f1"] > 0.93
    assert cos["best"]["S"] < ce["best"]["S"] - 0.1


@pytest.mark.slow
def test_output_folder_is_a_checkpoint_compkit_takes(data, trained):
    out = data["dir"] / "ce"
    assert {"config.json", "model.safetensors", "metrics.json", "training.json", "metrics.png"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] >= 1 and len(metrics["history"]) == 4
    moos = MOOSCompressor.from_pretrained(str(out))
    text = "the alpha and the very 42 of kilo so just then oscar is it the 7"
    # trained: what survives is what the rule keeps (6 of the 16 words are KEEP words)
    assert set(KEEP) & set(text.split()) <= set(moos.compress_prompt(text, rate=0.5)["compressed_prompt"].split())
    assert set(moos.compress_prompt(text, rate=0.3)["compressed_prompt"].split()) <= set(KEEP)


@pytest.mark.slow
def test_top_layers_only_and_batch_form(data):
    m = tm.train(_cfg(data, "top1", train_layers=1, beta=0.5, cosine_form="batch", epochs=2), progress=False)
    assert m["best"]["token_accuracy"] > 0.9
    tm.train(_cfg(data, "top1", train_layers=1, epochs=1, overwrite=True), progress=False)  # --overwrite replaces
    assert json.loads((data["dir"] / "top1" / "metrics.json").read_text())["history"][-1]["epoch"] == 1


def test_digit_weight_changes_the_loss_and_1_is_plain_ce(data):
    import torch
    import torch.nn.functional as F

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(data["base"])
    samples = [{"words": ["the", "42", "alpha", "of", "1999"], "labels": [0, 1, 1, 0, 1]},
               {"words": ["so", "7", "very"], "labels": [0, 1, 0]}]
    windows = tm.encode(samples, tok)
    assert [d for _, _, d in windows][1] == [0] + [1 if w == "7" else 0 for w in ["so", "7", "very"]
                                                   for _ in tok.tokenize(w)] + [0]
    _, ids, mask, labels, digit = next(tm.batches(windows, 8, tok.pad_token_id, shuffle=False))
    assert digit.any() and (~digit & (labels != tm.IGNORE)).any()
    logits = torch.randn(*labels.shape, 2, generator=torch.Generator().manual_seed(0))
    plain = F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1), ignore_index=tm.IGNORE)
    assert torch.allclose(tm.piece_loss(logits, labels, digit, 1.0), plain)
    valid = labels != tm.IGNORE
    ce = F.cross_entropy(logits[valid], labels[valid], reduction="none")
    w = torch.where(digit[valid], 10.0, 1.0)
    weighted = tm.piece_loss(logits, labels, digit, 10.0)
    assert torch.allclose(weighted, (w * ce).sum() / w.sum()) and not torch.allclose(weighted, plain)


@pytest.mark.parametrize("args, message", [
    (["--beta", "-1"], "--beta must be >= 0"),
    (["--cosine-form", "pairs"], "--cosine-form must be"),
    (["--digit-weight", "0"], "--digit-weight must be > 0"),
    (["--digit-weight", "-3"], "--digit-weight must be > 0"),
    (["--base", "MODEL_ONLY"], "not a *ForTokenClassification"),
    (["--train", "NOT_JSON"], "not JSON"),
    (["--train", "BAD_COUNT"], "2 labels for 3 words"),
    (["--train", "EMPTY_PAIR"], "field 'compressed' is empty"),
    (["--out", "EXISTS"], "exists: pass --overwrite"),
])
def test_bad_input_one_line_nothing_written(data, tmp_path, capsys, args, message):
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    (tmp_path / "count.jsonl").write_text(json.dumps({"words": ["a", "b", "c"], "labels": [1, 0]}) + "\n")
    (tmp_path / "pair.jsonl").write_text(json.dumps({"original": "a b", "compressed": ""}) + "\n")
    (tmp_path / "exists").mkdir()
    subs = {"MODEL_ONLY": make_bert_model_only(str(tmp_path / "bert-model")), "NOT_JSON": str(tmp_path / "bad.jsonl"),
            "BAD_COUNT": str(tmp_path / "count.jsonl"), "EMPTY_PAIR": str(tmp_path / "pair.jsonl"),
            "EXISTS": str(tmp_path / "exists")}
    flags = {"--train": data["train"], "--eval": data["eval"], "--base": data["base"], "--out": str(tmp_path / "new")}
    flags.update({flag: subs.get(value, value) for flag, value in zip(args[::2], args[1::2])})
    argv = [x for kv in flags.items() for x in kv]
    before = set(os.listdir(tmp_path))
    capsys.readouterr()
    assert tm.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0
    assert set(os.listdir(tmp_path)) == before and not (tmp_path / "new").exists()


@pytest.mark.slow
def test_trained_checkpoint_builds_and_passes_parity(data, trained, tmp_path):
    from export import build as build_cli

    ckpt, out = str(data["dir"] / "ce"), str(tmp_path / "build")
    rc = build_cli.main(["--target", "desktop", "--model", "moos", "--moos-checkpoint", ckpt, "--quant", "fp32",
                         "--seq-lens", "32", "--out", out, "--jobs", "1"])
    assert rc == 0
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert manifest["models"]["moos"]["provenance"] == f"checkpoint {os.path.abspath(ckpt)}"
    arts = [a for a in manifest["artifacts"] if a["model"] == "moos"]
    assert arts and all(a["enabled"] and a["parity"] is not None for a in arts), arts
