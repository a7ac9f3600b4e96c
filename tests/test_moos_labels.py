"""compressors.moos_labels against a literal transcription of LLMLingua-2's label_word.py / filter.py."""
import json
import random
from collections import defaultdict

import numpy as np
import pytest

from compressors import moos_labels as ml


def reference_labels(origin_tokens, comp_tokens, window_size=150):
    """label_word.py's loop, transcribed line for line (args.* -> parameters, prints removed)."""
    origin_tokens_set = set(origin_tokens)
    for token in origin_tokens:
        origin_tokens_set.add(token.lower())
    num_find = 0
    prev_idx = 0
    num_origin_tokens = len(origin_tokens)
    labels = [False] * num_origin_tokens
    for token in comp_tokens:
        if token in origin_tokens_set or token.lower() in origin_tokens_set:
            num_find += 1
        for i in range(window_size):
            token_idx = min(prev_idx + i, num_origin_tokens - 1)
            if origin_tokens[token_idx].lower() == token.lower() and not labels[token_idx]:
                labels[token_idx] = True
                if token_idx - prev_idx > window_size // 2:
                    prev_idx += window_size // 2
                else:
                    prev_idx = token_idx
                break
            token_idx = max(prev_idx - i, 0)
            if origin_tokens[token_idx].lower() == token.lower() and not labels[token_idx]:
                labels[token_idx] = True
                prev_idx = token_idx
                break
    comp_rate = len(comp_tokens) / len(origin_tokens)
    find_rate = num_find / len(comp_tokens) if len(comp_tokens) > 0 else 0.0
    hitting_rate = num_find / len(origin_tokens)
    matching_rate = sum(labels) / len(labels)
    return labels, dict(comp_rate=comp_rate, variation_rate=1 - find_rate, hitting_rate=hitting_rate,
                        matching_rate=matching_rate, alignment_gap=hitting_rate - matching_rate)


def reference_filter(vrs, ags):
    """filter.py's two passes; returns kept indices."""
    threshold = np.percentile(vrs, 90)
    kept = [i for i, v in enumerate(vrs) if not v >= threshold]
    threshold = np.percentile([ags[i] for i in kept], 90)
    return [i for i in kept if not ags[i] >= threshold]


def _check(origin, comp, window=150):
    expected, stats = reference_labels(origin, comp, window)
    got, num_find = ml.align(origin, comp, window)
    assert got == expected == ml.label_words(origin, comp, window)
    assert ml.pair_stats(origin, comp, got, num_find).__dict__ == pytest.approx(stats)
    return got


def test_constructed_pairs():
    words = "the cat sat on the mat and the dog sat on the log".split()
    # repeats: each compressed "the" takes the next unused one
    assert _check(words, ["the", "the", "the", "the"]) == [w == "the" for w in words]
    assert _check(words, ["The", "CAT", "log"]) == [i in (0, 1, 12) for i in range(len(words))]  # case-insensitive
    assert _check(words, ["zebra", "sat", "unicorn"]) == [i == 2 for i in range(len(words))]  # missing words
    assert _check(words, ["log", "cat"]) == [i in (1, 12) for i in range(len(words))]  # backward after a jump
    assert _check(words, []) == [False] * len(words)


def test_jumps_and_the_half_window_rule():
    origin = [f"w{i}" for i in range(400)] + ["target", "x", "target"]
    # a far forward match moves the anchor by only window // 2: the next search starts from 75, not 400
    got = _check(origin, ["w100", "target", "w10"], window=150)
    assert got[100] and not got[400] and got[10]
    _check(origin, ["w100", "w180", "w260", "target", "x", "target"], window=150)
    _check(origin, ["w0", "w74", "w76", "w149", "w150", "w10"], window=150)  # the window edge
    _check(origin, ["w3", "w2", "w1", "w0", "w0"], window=4)
    _check(origin[:5], ["w4", "w4", "w0", "w9"], window=150)  # clamped steps at both ends


def test_random_pairs_match_the_reference():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "The", "the", "x", "Y", "y", "z", "q"]
    for _ in range(400):
        origin = [rng.choice(vocab) for _ in range(rng.randint(1, 300))]
        comp = [w for w in origin if rng.random() < 0.4]
        comp = [rng.choice(vocab + ["new"]) if rng.random() < 0.1 else w for w in comp]
        if rng.random() < 0.3:
            rng.shuffle(comp)
        _check(origin, comp, window=rng.choice([2, 7, 10, 150]))


def test_filter_pairs_matches_filter_py():
    rng = np.random.default_rng(0)
    stats = [ml.PairStats(0.5, float(v), 0.5, 0.4, float(g)) for v, g in zip(rng.random(50), rng.random(50))]
    kept = ml.filter_pairs(stats)
    assert [i for i, k in enumerate(kept) if k] == reference_filter([s.variation_rate for s in stats],
                                                                    [s.alignment_gap for s in stats])
    assert 30 < sum(kept) < 45


def test_offline_splitter():
    words, keys = ml.split_words("She paid $1,000.50 for 3 well-known books, didn't she?", backend="offline")
    assert words == keys == ["She", "paid", "$", "1,000.50", "for", "3", "well-known", "books", "didn't", "she", "?"]


def test_cli_labels_and_filters(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    # pair i: i % 5 invented words (variation) and i % 3 repeats of a word used once (alignment gap)
    rows = [{"original": f"item {i} costs {i} dollars in total today",
             "compressed": f"item {i} costs {i} dollars" + " new" * (i % 5) + " total" * (i % 3)}
            for i in range(20)] + [{"original": "alpha beta gamma", "compressed": "omega psi"}]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels.jsonl"
    assert ml.main([str(pairs), "--out", str(out), "--splitter", "offline"]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) < len(rows) and all(r["words"] != ["alpha", "beta", "gamma"] for r in got)  # filtered
    assert got[0]["labels"] == [1, 1, 1, 1, 1, 0, 0, 0] and got[1]["labels"] == [1, 1, 1, 1, 1, 0, 1, 0]
    assert ml.main([str(pairs), "--out", str(out), "--no-filter", "--splitter", "offline"]) == 0
    assert len(out.read_text().splitlines()) == len(rows)


@pytest.mark.parametrize("line, message", [
    ('{"original": "a b", "compressed": ""}', "field 'compressed' is empty"),
    ('{"original": "a b"}', "field 'compressed' is missing"),
    ('{"original": 3, "compressed": "a"}', "field 'original' is a int"),
    ("not json", "not JSON"),
    ('{"words": ["a", "b"], "labels": [1]}', "1 labels for 2 words"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, line, message):
    src = tmp_path / "in.jsonl"
    src.write_text('{"original": "a b c", "compressed": "a c"}\n' + line + "\n")
    out = tmp_path / "out.jsonl"
    if "labels" in line:
        with pytest.raises(ml.LabelDataError, match=message):
            ml.read_labelled(str(src))
        return
    assert ml.main([str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()
    assert list(tmp_path.iterdir()) == [src]


def test_read_labelled_accepts_both_forms(tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text(json.dumps({"words": ["a", "b"], "labels": [True, 0]}) + "\n"
                   + json.dumps({"original": "x y z", "compressed": "x z"}) + "\n")
    got = ml.read_labelled(str(src), backend="offline")
    assert got == [{"words": ["a", "b"], "labels": [1, 0]}, {"words": ["x", "y", "z"], "labels": [1, 0, 1]}]
