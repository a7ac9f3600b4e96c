"""LLMLingua-2 word labels from (original, compressed) text pairs, and the filters it trains behind.

A port of microsoft/LLMLingua experiments/llmlingua2/data_collection/label_word.py (the alignment) and
filter.py (dropping pairs by variation rate, then by alignment gap). Given the same word lists,
`label_words` returns the reference's labels exactly, its quirks included:
- the window looks forward (prev + i, clamped to the last word) THEN backward (prev - i, clamped to 0) for
  i = 0 .. window_size - 1, so i = 0 tests the previous match twice and clamped steps retest the edge word;
- a forward match more than window_size // 2 past the previous one moves the anchor by only half a
  window (the "window do not go too fast" rule); a backward match moves it all the way;
- equality is case-insensitive; a word is used by at most one compressed word;
- the "find" statistics test membership in the set of original words and their lower-cased forms.

Word splitting (`split_words`): the reference uses spaCy's en_core_web_sm lemmas without ","; compkit does
the same when spaCy and that model are installed (`backend="spacy"`), keeping each token's surface text
for training and its lemma for matching. Offline (the default when spaCy is absent) words are runs of
letters/digits (with inner "." "," "'" "-" as in 3.5, 1,000, don't, well-known) or single other symbols,
"," dropped, matched case-insensitively without lemmas.

    python -m compressors.moos_labels PAIRS.jsonl --out LABELS.jsonl [--window-size 150] [--no-filter]

reads {"original": ..., "compressed": ...} lines and writes {"words": [...], "labels": [...]} lines, the
input `python -m compressors.train_moos` takes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys

import numpy as np

from compkit.errors import CompkitError
from compkit.files import atomic_path, dumps_json

IGNORE_TOKENS = frozenset([","])
_OFFLINE = re.compile(r"[^\W_]+(?:['.,\-][^\W_]+)*|\S", re.UNICODE)


class LabelDataError(CompkitError, ValueError):
    """Bad label input; the message is one line and says what to fix."""


def is_equal(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def label_words(origin_words, comp_words, window_size: int = 150) -> list[bool]:
    """One keep label per original word: the reference's windowed greedy alignment."""
    return align(origin_words, comp_words, window_size)[0]


def align(origin_words, comp_words, window_size: int = 150) -> tuple[list[bool], int]:
    """(labels, num_find): num_find counts compressed words present anywhere in the original."""
    if not isinstance(window_size, int) or window_size < 1:
        raise ValueError(f"window_size must be a positive integer, not {window_size!r}")
    origin, n = list(origin_words), len(origin_words)
    labels = [False] * n
    if n == 0:
        return labels, 0
    vocab = set(origin) | {w.lower() for w in origin}
    num_find, prev = 0, 0
    half = window_size // 2
    for token in comp_words:
        if token in vocab or token.lower() in vocab:
            num_find += 1
        for i in range(window_size):
            idx = min(prev + i, n - 1)  # look forward
            if is_equal(origin[idx], token) and not labels[idx]:
                labels[idx] = True
                prev = prev + half if idx - prev > half else idx
                break
            idx = max(prev - i, 0)  # look backward
            if is_equal(origin[idx], token) and not labels[idx]:
                labels[idx] = True
                prev = idx
                break
    return labels, num_find


@dataclasses.dataclass
class PairStats:
    """label_word.py's per-pair figures (filter.py reads variation_rate and alignment_gap)."""

    comp_rate: float
    variation_rate: float
    hitting_rate: float
    matching_rate: float
    alignment_gap: float


def pair_stats(origin_words, comp_words, labels, num_find) -> PairStats:
    n, m = len(origin_words), len(comp_words)
    find_rate = num_find / m if m else 0.0
    hitting = num_find / n
    matching = sum(labels) / len(labels)
    return PairStats(m / n, 1 - find_rate, hitting, matching, hitting - matching)


def filter_pairs(stats: list[PairStats], percentile: float = 90) -> list[bool]:
    """filter.py: drop pairs whose variation rate is at or above its 90th percentile, then, of the rest,
    those whose alignment gap is at or above the 90th percentile of the rest. True = kept."""
    if not stats:
        return []
    vr = np.array([s.variation_rate for s in stats])
    keep = vr < np.percentile(vr, percentile)
    if keep.any():
        ag = np.array([s.alignment_gap for s in stats])
        keep &= ag < np.percentile(ag[keep], percentile)
    return keep.tolist()


# ------------------------------------------------------------------------------------------ word splitting
def _spacy():
    try:
        import spacy

        return spacy.load("en_core_web_sm")
    except (ImportError, OSError):
        return None


def split_words(text: str, backend: str = "auto", _nlp_cache={}) -> tuple[list[str], list[str]]:
    """(surface words, matching keys) of a text. backend: "spacy" (lemmas as keys, as the reference),
    "offline" (keys = the words), "auto" (spaCy when spaCy and en_core_web_sm are installed)."""
    if backend not in ("auto", "spacy", "offline"):
        raise ValueError(f"backend must be 'auto', 'spacy' or 'offline', not {backend!r}")
    if backend != "offline":
        if "nlp" not in _nlp_cache:
            _nlp_cache["nlp"] = _spacy()
        nlp = _nlp_cache["nlp"]
        if nlp is None and backend == "spacy":
            raise LabelDataError("backend 'spacy' needs spaCy and its en_core_web_sm model installed; "
                                 "install them or use the offline splitter")
        if nlp is not None:
            doc = [t for t in nlp(text) if t.lemma_ not in IGNORE_TOKENS and not t.is_space]
            return [t.text for t in doc], [t.lemma_ for t in doc]
    words = [w for w in _OFFLINE.findall(text) if w not in IGNORE_TOKENS]
    return words, list(words)


# ------------------------------------------------------------------------------------------ files
def read_jsonl(path):
    """Yield (line number, dict) of a JSONL file; one-line errors for a missing file or a line that is not JSON."""
    if not os.path.isfile(path):
        raise LabelDataError(f"data file not found: {path}")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LabelDataError(f"{path}:{n}: not JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise LabelDataError(f"{path}:{n}: a JSON {type(row).__name__}, not an object")
            yield n, row


def _text_field(path, n, row, key):
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        what = "missing" if key not in row else "empty" if isinstance(value, str) else f"a {type(value).__name__}"
        raise LabelDataError(f"{path}:{n}: field {key!r} is {what}; each pair needs non-empty "
                             "\"original\" and \"compressed\" strings")
    return value


def read_labelled(path, backend: str = "auto") -> list[dict]:
    """Word-labelled samples {"words", "labels"} from a JSONL of ready labels ({"words", "labels"}) or of
    pairs ({"original", "compressed"}, labelled here without filtering)."""
    out = []
    for n, row in read_jsonl(path):
        if "words" in row or "labels" in row:
            words, labels = row.get("words"), row.get("labels")
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
                raise LabelDataError(f"{path}:{n}: \"words\" must be a non-empty list of non-empty strings")
            if not isinstance(labels, list) or not all(isinstance(x, (bool, int)) and x in (0, 1) for x in labels):
                raise LabelDataError(f"{path}:{n}: \"labels\" must be a list of 0/1 or true/false")
            if len(labels) != len(words):
                raise LabelDataError(f"{path}:{n}: {len(labels)} labels for {len(words)} words; give one label per word")
            out.append({"words": words, "labels": [int(x) for x in labels]})
        else:
            original, compressed = _text_field(path, n, row, "original"), _text_field(path, n, row, "compressed")
            out.append(label_pair(original, compressed, backend=backend)[0])
    if not out:
        raise LabelDataError(f"{path}: no samples; pass JSONL lines of {{\"original\", \"compressed\"}} or {{\"words\", \"labels\"}}")
    return out


def label_pair(original: str, compressed: str, window_size: int = 150, backend: str = "auto"):
    """({"words", "labels"}, PairStats) of one pair: keys are aligned, surface words are what training sees."""
    words, keys = split_words(original, backend)
    _, comp_keys = split_words(compressed, backend)
    if not words:
        raise LabelDataError("an original text holds no words")
    labels, num_find = align(keys, comp_keys, window_size)
    return {"words": words, "labels": [int(x) for x in labels]}, pair_stats(keys, comp_keys, labels, num_find)


def write_jsonl_atomic(path, rows) -> None:
    """Write rows to path through a temp file in the same folder and a rename: never half-written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(dumps_json(r, indent=None))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.moos_labels", description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", help="JSONL of {\"original\", \"compressed\"}")
    ap.add_argument("--out", required=True, help="JSONL of {\"words\", \"labels\"} to write")
    ap.add_argument("--window-size", type=int, default=150)
    ap.add_argument("--no-filter", action="store_true", help="keep every pair (skip filter.py's two filters)")
    ap.add_argument("--splitter", choices=["auto", "spacy", "offline"], default="auto")
    args = ap.parse_args(argv)
    try:
        if args.window_size < 1:
            raise LabelDataError(f"--window-size must be >= 1, not {args.window_size}")
        rows, stats = [], []
        for n, row in read_jsonl(args.pairs):
            original, compressed = _text_field(args.pairs, n, row, "original"), _text_field(args.pairs, n, row, "compressed")
            sample, st = label_pair(original, compressed, args.window_size, args.splitter)
            rows.append(sample), stats.append(st)
        if not rows:
            raise LabelDataError(f"{args.pairs}: no pairs")
        keep = [True] * len(rows) if args.no_filter else filter_pairs(stats)
        write_jsonl_atomic(args.out, [r for r, k in zip(rows, keep) if k])
    except (CompkitError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {sum(keep)} of {len(rows)} pairs kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
