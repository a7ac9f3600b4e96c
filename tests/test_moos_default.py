"""The trained MOOSComp default: its offline GSM8K label rule, the shipped tensors and what they learned."""
import os

import numpy as np
import pytest
import torch

from compressors import moos_default as md
from compressors.moos import DEMO_PROVENANCE, CheckpointError, MOOSCompressor, default_token_classifier

# compkit-authored, GSM8K-style (not a GSM8K item)
QUESTION = ("Maria buys 3 boxes of pencils. Each box holds 12 pencils and costs $4. She gives 5 pencils to her "
            "brother. How many pencils does Maria have left, and how much did she spend?")
ANSWER = ("Maria has 3 * 12 = <<3*12=36>>36 pencils.\nAfter giving 5 away she has 36 - 5 = <<36-5=31>>31 pencils.\n"
          "She spent 3 * 4 = $<<3*4=12>>12.\n#### 31")


def test_normalise_and_label_rule():
    assert [md.normalise(w) for w in ["Pencils", "$1,000", "5.0", "2.50", "giving", "box's", "is"]] == \
        ["pencil", "1000", "5", "2.5", "giv", "box", "is"]
    lab = md.gsm8k_labels(QUESTION, ANSWER)
    kept = {w for w, y in zip(lab["words"], lab["labels"]) if y}
    assert {"Maria", "3", "12", "pencils", "5", "4"} <= kept  # digits and solution words
    assert not {"brother", "Each", "How"} & kept  # words the solution never uses
    assert len(lab["words"]) == len(lab["labels"])


def test_validation_is_the_last_train_questions_and_never_trained_on():
    rows = [{"question": f"q{i}", "answer": "a"} for i in range(10)]
    train, val = md.split_train(rows, 4, 3)
    assert [r["question"] for r in val] == ["q7", "q8", "q9"] and [r["question"] for r in train] == ["q0", "q1", "q2", "q3"]
    assert len(md.split_train(rows, 0, 3)[0]) == 7  # 0 = all but validation
    for n_train, n_val in ((8, 3), (2, 0), (2, 10)):
        with pytest.raises(md.moos_labels.LabelDataError):
            md.split_train(rows, n_train, n_val)


def test_shipped_tensors_are_small_and_say_what_they_learned():
    assert os.path.getsize(md.SHIPPED) < 5_000_000
    assert "GSM8K train" in md.shipped_provenance()
    trained, _ = default_token_classifier()
    fresh, _ = default_token_classifier(trained=False)
    t, f = trained.state_dict(), fresh.state_dict()
    changed = {k for k in t if not torch.equal(t[k], f[k])}
    assert changed == set(md.trained_state(trained)) and "bert.encoder.layer.0.output.dense.weight" not in changed


def test_default_is_trained_and_keeps_what_the_solution_needs():
    moos = MOOSCompressor.from_default()
    assert moos.provenance == DEMO_PROVENANCE and "GSM8K" in moos.provenance
    lab = md.gsm8k_labels(QUESTION, ANSWER)
    kept_words = moos.compress_prompt(QUESTION, rate=0.5)["compressed_prompt"].lower().split()
    numbers = [w for w in lab["words"] if w.isdigit()]
    assert sum(n in kept_words for n in numbers) >= len(numbers) - 1  # no force_reserve_digit: learned


def test_missing_shipped_file_is_one_clear_error(tmp_path):
    model, _ = default_token_classifier(trained=False)
    with pytest.raises(CheckpointError, match="missing from the package"):
        md.load_shipped(model, str(tmp_path / "nope.safetensors"))


def test_build_refuses_a_missing_gsm8k_folder(tmp_path, capsys):
    assert md.main(["build", "--gsm8k", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "GSM8K file not found" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()


def test_ablation_reads_word_survival_from_the_compressors_own_labels():
    """A word survives when all its letters and digits were kept, placed back from compress_prompt's word labels
    across questions: "5." then "15" stay two numbers, a dropped hyphen keeps "400-meter", a dropped "s" loses
    "Jerome's", accents fold as the uncased tokenizer folds them, [UNK] is counted, never placed."""
    from compressors import moos_ablation as ab

    questions = ["It costs 5. Then 15 more.", "Jerome's 400-meter café", "Zoë runs"]
    words = ["it", "costs", "5", ".", "then", "15", "more", ".", "jerome", "'", "s", "400", "-", "meter", "cafe",
             "[UNK]", "runs"]
    labels = [0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0]
    kept, unplaced = ab.kept_characters(questions, words, labels)
    assert unplaced == 1 and [len(k) for k in kept] == [len(q) for q in questions]
    survived = [ab.surviving_words(q, md.gsm8k_labels(q, "")["words"], k) for q, k in zip(questions, kept)]
    offline = [md.gsm8k_labels(q, "")["words"] for q in questions]
    alive = {w for ws, s in zip(offline, survived) for w, ok in zip(ws, s) if ok}
    assert {"5", "15", "more", "café"} <= alive and not alive & {"It", "costs", "Then", "Jerome's", "Zoë", "runs"}
    assert "400-meter" in alive
    labelled = [{"words": ws, "labels": [1] * len(ws)} for ws in offline]
    score = ab.score_compression(questions, labelled, (words, labels))
    assert score["unplaced_words"] == 1 and score["numbers_kept"] == 1.0  # 5, 15 and 400(-meter) all survive


def test_a_number_survives_with_all_its_characters_whatever_its_joined_letters():
    """"30" of "30-minute" survives when only "minute" is dropped (a digit word does not); "2.00" with its point
    dropped and "10,440,000" with a comma dropped do not survive: the LLM would read another number."""
    from compressors import moos_ablation as ab

    questions = ["A 30-minute walk costs $2.00 for 10,440,000 steps."]
    words = ["a", "30", "-", "minute", "walk", "costs", "$", "2", ".", "00", "for", "10", ",", "440", ",", "000",
             "steps", "."]
    keep = {"30", "-", "2", "00", "10", "440", "000"}
    labels = [int(w in keep) for w in words]
    labels[12] = 1  # the first comma of 10,440,000 is kept, the second not
    offline = md.gsm8k_labels(questions[0], "")["words"]
    score = ab.score_compression(questions, [{"words": offline, "labels": [1] * len(offline)}], (words, labels))
    assert score["numbers_kept"] == 1 / 3  # 30 survives; 2.00 and 10,440,000 do not
    assert score["digit_words_kept"] == 2 / 3  # 30-minute lost its letters; a digit word needs no separator
    words_all = ab.score_compression(questions, [{"words": offline, "labels": [1] * len(offline)}], (words, [1] * len(words)))
    assert words_all["numbers_kept"] == words_all["digit_words_kept"] == 1.0


def test_ablation_at_rate_one_keeps_every_word_of_real_questions():
    """Nothing dropped: with the real default compressor every number and solution word survives."""
    from compressors import moos_ablation as ab
    from compressors.moos import MOOSCompressor

    questions = ["Ana has 3 apples and $1,250.50 in savings; she buys 12 more at 0.5 each.",
                 "Zoë's 400-meter run took 1-hour. How many minutes?"]
    labelled = [md.gsm8k_labels(q, "Ana 3 apples 12 minutes") for q in questions]
    score = ab.score_compression(questions, labelled, ab.word_labels(MOOSCompressor.from_default(), questions, 1.0))
    # (words_kept stays below 1: with nothing to drop, compress_prompt's word list leaves sentence ends out)
    assert score["numbers_kept"] == score["solution_words_kept"] == 1.0 and score["words_kept"] > 0.9
    assert score["unplaced_words"] == 0 and score["keep_f1"] < 1.0  # words outside the labels were kept too


def test_ablation_choice_puts_numbers_first_then_solution_words():
    """On validation: settings that drop numbers lose to one that keeps them, whatever their solution words;
    among those within the tolerance of the best numbers, the most solution words wins."""
    from compressors import moos_ablation as ab

    def setting(numbers, words, gains=(0.0, 0.0, 0.0)):
        out = {}
        for part in ("val", "test"):
            for r, n in zip(("0.25", "0.33"), numbers):
                out[f"{part}_compression.none:0@{r}.numbers_kept"] = {"mean": n, "spread": 0.0}
                per_seed = [words + 0.01 * k + g for k, g in enumerate(gains)]  # seeds differ more than settings
                out[f"{part}_compression.none:0@{r}.solution_words_kept"] = {
                    "mean": float(np.mean(per_seed)), "spread": float(np.ptp(per_seed)), "values": per_seed}
        return out

    summary = {"untrained": setting((0.3, 0.4), 0.2), "CE": setting((0.95, 0.97), 0.41),
               "CE+0.5*S": setting((0.955, 0.97), 0.41, gains=(0.002, 0.003, 0.001)),
               "CE+0.5*S[dw10]": setting((0.989, 0.992), 0.396),
               "CE+1*S[dw10]": setting((0.987, 0.991), 0.398), "CE+2*S[dw10]": setting((0.983, 0.99), 0.40)}
    choice = ab.choose({"summary": summary, "config": {"rates": [0.25, 0.33]}})
    assert choice["variant"] == "CE+1*S[dw10]" and choice["numbers_ok"] is False  # 0.987 >= 0.989 - 0.005; 0.983 is not
    assert choice["test_gain"] == pytest.approx(0.398 - 0.41) and not choice["beats_ce"]
    assert choice["paired"]["seeds_up"] == 0 and choice["paired"]["mean_gain"] == pytest.approx(-0.012)

    # solution words alone (the target): the setting that gains on every seed, though by less than the
    # seed spread; the paired test sees what the spread rule cannot
    words = ab.choose({"summary": summary, "config": {"rates": [0.25, 0.33]}}, numbers_first=False)
    assert words["variant"] == "CE+0.5*S" and not words["beats_ce"]
    assert words["paired"]["seeds_up"] == 3 and words["paired"]["mean_gain"] == pytest.approx(0.002)
    assert words["paired"]["p_one_sided"] < 0.05


@pytest.mark.slow
def test_ablation_runs_end_to_end_on_a_small_gsm8k_like_set(tmp_path):
    """The ablation command on compkit-authored GSM8K-style rows (so it needs nothing beside the project)."""
    import json

    from compressors import moos_ablation

    names, items = ["Ana", "Ben", "Carl", "Dina"], ["apples", "books", "coins", "pens"]
    for split, n in (("train", 30), ("test", 8)):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for i in range(n):
                a, b, who, what = 3 + i, 7 + 2 * i, names[i % 4], items[(i // 4) % 4]
                q = f"{who} has {a} {what}. A friend gives {who} {b} more {what} on Monday. How many {what} now?"
                ans = f"{who} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {what}.\n#### {a + b}"
                f.write(json.dumps({"question": q, "answer": ans}) + "\n")
    out = tmp_path / "ablation"
    before = open(md.SHIPPED, "rb").read()
    assert moos_ablation.main(["--gsm8k", str(tmp_path), "--out-dir", str(out), "--train-samples", "24",
                               "--val-samples", "6", "--test-samples", "0", "--epochs", "1", "--variants", "0,0.5:dw3",
                               "--seeds", "0,1", "--weights", "1", "--rates", "0.33"]) == 0
    res = json.loads((out / "ablation.json").read_text())
    assert res["config"]["test_samples"] == 8 and res["config"]["val_samples"] == 6  # 0 = every test question
    assert set(res["runs"]) == {"untrained", "CE", "CE+0.5*S[dw3]"} and set(res["runs"]["CE"]) == {"0", "1"}
    assert {"none:0@0.33", "representation:1@0.33", "rarity:1@0.33"} == set(res["runs"]["CE"]["0"]["test_compression"])
    cell = res["summary"]["CE"]["test_compression.none:0@0.33.solution_words_kept"]
    assert len(cell["values"]) == 2 and cell["spread"] == max(cell["values"]) - min(cell["values"])
    assert res["choice"]["variant"] == "CE+0.5*S[dw3]" or res["choice"]["outlier"] != "none:0"
    assert (out / "ablation.md").read_text().count("| CE+0.5*S[dw3] |") == 7 and (out / "ablation.png").exists()
    assert sorted(os.listdir(out / "variants")) == ["CE+0.5*S[dw3]-seed0.safetensors", "CE+0.5*S[dw3]-seed1.safetensors",
                                                    "CE-seed0.safetensors", "CE-seed1.safetensors"]
    assert open(md.SHIPPED, "rb").read() == before  # no --ship: the shipped default is untouched

    # --merge: the same configuration on other seeds (here the same runs relabelled as seeds 3 and 2) joins in
    # seed order, so the seed-paired comparison pairs each setting's seed with CE's
    other = json.loads(json.dumps(res))
    for by_seed in other["runs"].values():
        by_seed["3"], by_seed["2"] = by_seed.pop("0"), by_seed.pop("1")
    (tmp_path / "other.json").write_text(json.dumps(other))
    merged = tmp_path / "merged"
    assert moos_ablation.main(["--merge", str(out / "ablation.json"), str(tmp_path / "other.json"), "--out-dir", str(merged)]) == 0
    m = json.loads((merged / "ablation.json").read_text())
    assert m["config"]["seeds"] == [0, 1, 2, 3] and list(m["runs"]["CE"]) == ["0", "1", "2", "3"]
    cell4 = m["summary"]["CE"]["test_compression.none:0@0.33.solution_words_kept"]["values"]
    assert cell4 == cell["values"] + cell["values"][::-1]  # seeds 2, 3 are the old 1, 0
    paired = m["choice_solution_words"]["paired"]
    assert paired["seeds"] == 4 and paired["gains"][:2] == res["choice_solution_words"]["paired"]["gains"]
    # the same seeds twice, or another configuration, are refused with one line and nothing written
    assert moos_ablation.main(["--merge", str(out / "ablation.json"), str(out / "ablation.json"), "--out-dir", str(tmp_path / "x")]) == 2
    other["config"]["epochs"] = 3
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert moos_ablation.main(["--merge", str(out / "ablation.json"), str(tmp_path / "other.json"), "--out-dir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_default_loads_quietly_and_leaves_transformers_verbosity_alone(capfd):
    """The default's expected load notes (MiniLM's unused pooler, the head compkit sets, the force-token
    resize) are not printed on every call; transformers' own verbosity is what it was before."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    capfd.readouterr()
    MOOSCompressor.from_default()
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "new embeddings" not in out + err
    assert hf_logging.get_verbosity() == hf_logging.WARNING


def test_default_in_a_fresh_interpreter_prints_nothing():
    """A first load in a new process is the one that imports transformers' model classes, which pull in torchao:
    its notes on optional extensions it cannot load, and torch's pytree notes on its enums, stay quiet too."""
    import subprocess
    import sys

    code = ("from compressors.moos import MOOSCompressor\n"
            "c = MOOSCompressor.from_default()\n"
            "print(c.compress_prompt(['Tom has 3 apples and buys 5 more.'], rate=0.5)['compressed_prompt'])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=root))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip() == "" and "3" in r.stdout, r.stderr[-2000:]
