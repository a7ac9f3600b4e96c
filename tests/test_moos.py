"""MOOSComp beyond LLMLingua-2: outlier scores, the scorer contract, the default, and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoints
from compressors.moos import CheckpointError, MOOSCompressor
from compressors.moos_scorer import TokenScorer, example_inputs, representation_outlier_z
from compressors.rarity import RarityTable

RARE = ["zyrtec", "ljubljana", "myocardial", "kubernetes", "xylophone", "quixotic", "pterodactyl", "fjord"]
COMMON = ("the team met on monday and talked about the plan for the week . they agreed to send the notes "
          "to everyone and to meet again next week at the same time . ")


@pytest.fixture(scope="module")
def moos(bert_dir):
    return MOOSCompressor.from_pretrained(bert_dir)


def _labels(result):
    pairs = [p.rsplit(" ", 1) for p in result["fn_labeled_original_prompt"].split("\t\t|\t\t")]
    return [(w, int(l)) for w, l in pairs]


def test_rarity_outliers_rescue_rare_words(bert_dir, tmp_path):
    common_corpus = [COMMON] * 50
    ours = MOOSCompressor.from_pretrained(bert_dir)
    table = RarityTable.from_texts(ours.tokenizer, common_corpus)
    text = COMMON * 2 + " ".join(f"the {w} ." for w in RARE) + " " + COMMON
    plain = MOOSCompressor.from_pretrained(bert_dir, outlier="rarity", outlier_weight=0.0, rarity_table=table)
    fused = MOOSCompressor.from_pretrained(bert_dir, outlier="rarity", outlier_weight=2.0, rarity_table=table)
    before = _labels(plain.compress_prompt(text, rate=0.2, return_word_label=True))
    after = _labels(fused.compress_prompt(text, rate=0.2, return_word_label=True))
    dropped_rare = {w for w, l in before if w in RARE and l == 0}
    assert dropped_rare, "the classifier alone should drop some rare words at rate 0.2"
    kept_after = {w for w, l in after if l == 1}
    assert dropped_rare <= kept_after, f"outlier scores did not rescue {dropped_rare - kept_after}"
    # the fused run still compresses: the rescue displaces common words, the budget holds
    assert sum(l for _, l in after) <= sum(l for _, l in before) + len(RARE)


def test_representation_outlier_z_definition():
    torch.manual_seed(0)
    hidden = torch.randn(2, 10, 8)
    mask = torch.ones(2, 10)
    mask[1, 7:] = 0
    z = representation_outlier_z(hidden, mask)
    h, m = hidden[1, :7].numpy(), 7
    dist = np.linalg.norm(h - h.mean(0), axis=1)
    expected = (dist - dist.mean()) / np.sqrt(dist.var() + 1e-6)
    np.testing.assert_allclose(z[1, :m].numpy(), expected, atol=1e-5)
    assert torch.all(z[1, 7:] == 0)


def test_representation_outlier_keeps_the_most_outlying_word(bert_dir, corpus):
    text = corpus[0]
    plain = MOOSCompressor.from_pretrained(bert_dir)
    fused = MOOSCompressor.from_pretrained(bert_dir, outlier="representation", outlier_weight=5.0)
    windows = fused._windows(fused._chunk(fused.tokenizer.tokenize(text), {".", "\n"}))
    fused._score(windows)
    w = windows[0]
    best = int(np.argmax(np.where(np.isin(w.ids, fused.tokenizer.all_special_ids), -np.inf, w.outlier_z)))
    token = fused.id_to_token[w.ids[best]]
    assert w.outlier_z[best] > 1.5
    kept = fused.compress_prompt(text, rate=0.1, return_word_label=True)
    words = _labels(kept)
    assert any(l == 1 and token.lstrip("#") in word for word, l in words)
    assert plain.compress_prompt(text, rate=0.1)["compressed_prompt"] != kept["compressed_prompt"]


def test_scorer_masks_padding_exactly(moos):
    ids, mask = example_inputs(64, batch=1, vocab_size=1000, n_real=40)
    scorer = moos.torch_module
    with torch.no_grad():
        padded = scorer(ids, mask)
        trimmed = scorer(ids[:, :40], mask[:, :40])
    for a, b in zip(padded, trimmed):
        torch.testing.assert_close(a[:, :40], b, atol=1e-5, rtol=1e-5)


def test_bucketed_scorer_gives_the_same_words(moos, corpus):
    class Bucketed:  # an artifact-shaped scorer: fixed lengths, batch 1
        seq_lens = (128, 256, 512)

        def __call__(self, ids, mask):
            assert ids.shape[1] in self.seq_lens and ids.dtype == np.int32
            outs = [moos.scorer(ids[i : i + 1], mask[i : i + 1]) for i in range(len(ids))]
            return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    text = "\n".join(corpus[:6])
    assert moos.with_scorer(Bucketed()).compress_prompt(text, rate=0.33) == moos.compress_prompt(text, rate=0.33)


def test_default_is_labelled_trained_and_compresses():
    moos = MOOSCompressor.from_default()
    assert moos.provenance.startswith("compkit default: MiniLM-L6") and "GSM8K train" in moos.provenance
    out = moos.compress_prompt(COMMON * 3, rate=0.5)
    assert 0 < out["compressed_tokens"] < out["origin_tokens"]
    # the offline default counter: the compressor's own pieces (taken from the chunking's tokenization)
    assert out["origin_tokens"] == len(moos.tokenizer(COMMON * 3, add_special_tokens=False)["input_ids"])
    forced = moos.compress_prompt(COMMON * 3, rate=0.5, force_tokens=["!!"])  # a force map: counted apart
    assert forced["origin_tokens"] == out["origin_tokens"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=""), "context is empty"),
    (dict(context=["", "  "]), "context is empty"),
    (dict(context="some text", rate=0), "rate must be in (0, 1]"),
    (dict(context="some text", rate=1.5), "rate must be in (0, 1]"),
    (dict(context=42), "context must be a string"),
    (dict(context="some text", token_to_word="max"), "token_to_word"),
])
def test_bad_arguments(moos, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace("]", r"\]")):
        moos.compress_prompt(**kwargs)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        MOOSCompressor.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="no config.json"):
        MOOSCompressor.from_pretrained(str(tmp_path))
    wrong = checkpoints.make_bert_model_only(str(tmp_path / "wrong"))
    with pytest.raises(CheckpointError, match="BertModel, not a \\*ForTokenClassification"):
        MOOSCompressor.from_pretrained(wrong)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="corrupt config.json"):
        MOOSCompressor.from_pretrained(str(corrupt))
    broken = checkpoints.make_bert(str(tmp_path / "broken"))
    with open(os.path.join(broken, "model.safetensors"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(CheckpointError, match="cannot load the weights"):
        MOOSCompressor.from_pretrained(broken)
    for err in (CheckpointError,):
        assert issubclass(err, ValueError)


def test_rarity_without_table_is_an_error(bert_dir):
    with pytest.raises(ValueError, match="needs a rarity table"):
        MOOSCompressor.from_pretrained(bert_dir, outlier="rarity", outlier_weight=0.5)


def test_rarity_cli_builds_a_table_beside_the_checkpoint(tmp_path):
    ck = checkpoints.make_bert(str(tmp_path / "ck"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": COMMON, "n": 1}) for _ in range(5)))
    run = subprocess.run([sys.executable, "-m", "compressors.rarity", "build", ck, str(corpus)],
                         capture_output=True, text=True, cwd=checkpoints.ROOT)
    assert run.returncode == 0, run.stderr
    table = RarityTable.load(os.path.join(ck, RarityTable.FILENAME))
    the = MOOSCompressor.from_pretrained(ck).tokenizer.convert_tokens_to_ids("the")
    assert table.counts[the] == 5 * COMMON.split().count("the")
    loaded = MOOSCompressor.from_pretrained(ck, outlier="rarity", outlier_weight=0.5)
    assert loaded.rarity_table is not None
    bad = subprocess.run([sys.executable, "-m", "compressors.rarity", "build", ck, str(tmp_path / "missing.txt")],
                         capture_output=True, text=True, cwd=checkpoints.ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "corpus file not found" in bad.stderr
