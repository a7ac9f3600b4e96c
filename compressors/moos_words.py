"""LLMLingua-2's word-level steps as plain functions over one window: chunking, piece-to-word merge,
force/digit overrides, outlier fusion and the per-window percentile threshold.

Every rule here mirrors llmlingua/prompt_compressor.py (0.2.2) exactly, quirks included, because users
switching from LLMLingua-2 must get the same words back; each quirk kept on purpose is marked "as LLMLingua".
Probabilities live in numpy arrays; only the string work (building word texts) is a Python pass.
"""
from __future__ import annotations

import dataclasses
import re
import string

import numpy as np

_DIGIT = re.compile(r"\d")
_WORD_SPLIT = re.compile(r'\b\w+\b|[<>=/!@#$%^&*()?":{}|\\`~;_+-]')
OUTLIER_Z_CLIP = 3.0


@dataclasses.dataclass
class WordRules:
    family: str  # "wordpiece" or "sentencepiece"
    force_tokens: list[str]
    token_map: dict[str, str]  # force token that is several pieces -> its [NEWi] stand-in
    force_reserve_digit: bool = False
    token_to_word: str = "mean"

    def __post_init__(self):
        self.force_set = set(self.force_tokens)
        self.forced_pieces = self.force_set | set(self.token_map.values())

    def pure(self, token: str) -> str:
        return token.lstrip("##") if self.family == "wordpiece" else token.lstrip("▁")

    def begins_word(self, token: str) -> bool:
        if self.family == "wordpiece":
            return token.lstrip("##") in self.forced_pieces or not token.startswith("##")
        # `in string.punctuation` is a substring test ("()" counts): as LLMLingua
        return token in string.punctuation or token in self.forced_pieces or token.startswith("▁")

    def restore(self, token: str) -> str:
        for original, stand_in in self.token_map.items():
            token = token.replace(stand_in, original)
        return token


@dataclasses.dataclass
class WindowWords:
    words: list[str]
    piece_prob: np.ndarray  # float32, force/digit overrides applied (forced pieces = top score)
    starts: np.ndarray  # index of each word's first piece
    forced: np.ndarray  # per piece: overridden to the top score
    first_prob_no_force: np.ndarray  # what LLMLingua's context-level filter averages (first piece, no force)


def chunk_pieces(pieces: list[str], chunk_end: set[str], max_len: int) -> list[tuple[int, int]]:
    """[start, end) piece ranges: at most max_len pieces, cut right after the last chunk-end piece."""
    n, st, spans = len(pieces), 0, []
    is_end = np.fromiter((p in chunk_end for p in pieces), dtype=bool, count=n)
    while st < n:
        if st + max_len > n - 1:
            spans.append((st, n))
            break
        ed = st + max_len
        ends = np.flatnonzero(is_end[st + 1 : ed + 1])  # LLMLingua looks back from ed down to st + 1
        if len(ends):
            ed = st + 1 + int(ends[-1])
        spans.append((st, ed + 1))
        st = ed + 1
    return spans


def merge_window(tokens: list[str], prob: np.ndarray, z: np.ndarray | None, rules: WordRules,
                 special: set[str], outlier_weight: float) -> WindowWords:
    """Pieces of one window (special tokens included) -> words with per-piece scores.

    Score of a piece = keep probability + outlier_weight * f(z), f(z) = clip(z, 0, 3) / 3; a forced piece
    (force token or, with force_reserve_digit, a digit) scores 1 + outlier_weight, the maximum, which is
    LLMLingua's 1.0 when the weight is 0.
    """
    keep = [t not in special for t in tokens]
    toks = [t for t, k in zip(tokens, keep) if k]
    p = prob[np.asarray(keep, dtype=bool)] if len(tokens) else prob[:0]
    if not toks:
        return WindowWords([], p, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), p)
    begins = np.fromiter((rules.begins_word(t) for t in toks), dtype=bool, count=len(toks))
    begins[0] = True  # LLMLingua would crash on a leading continuation; it cannot occur after re-tokenising
    top = np.float32(1.0 + outlier_weight)
    score = p.astype(np.float32).copy()
    if outlier_weight > 0 and z is not None:
        zk = z[np.asarray(keep, dtype=bool)]
        score = score + np.float32(outlier_weight) * (np.clip(zk, 0.0, OUTLIER_Z_CLIP) / OUTLIER_Z_CLIP).astype(np.float32)
    forced = np.zeros(len(toks), dtype=bool)
    texts = []
    for i, t in enumerate(toks):
        if begins[i]:
            if rules.pure(t) in rules.forced_pieces:
                forced[i] = True
            t = rules.restore(t)
            texts.append(t)
        else:
            texts.append(rules.pure(t))
        # the digit test sees the restored text of a first piece and the raw text of a later one: as LLMLingua
        if rules.force_reserve_digit and _DIGIT.search(t):
            forced[i] = True
    score[forced] = top
    starts = np.flatnonzero(begins)
    bounds = list(starts) + [len(toks)]
    words = ["".join(texts[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return WindowWords(words, score, starts, forced, p[starts].astype(np.float32))


def word_scores(ww: WindowWords, token_to_word: str) -> np.ndarray:
    """Word score = mean (or first) of its pieces' scores. The dtype mirrors LLMLingua's Python list: it
    holds a Python float (so numpy makes it float64) where a word's score is built only from forced pieces;
    np.percentile and the comparisons then run in float64, else in float32. Matching that keeps near-ties
    identical."""
    if token_to_word == "mean":
        counts = np.diff(np.append(ww.starts, len(ww.piece_prob))).astype(np.float32)
        scores = (np.add.reduceat(ww.piece_prob, ww.starts) / counts).astype(np.float32)
        python_float = np.logical_and.reduceat(ww.forced, ww.starts).any() if len(ww.starts) else False
    elif token_to_word == "first":
        scores = ww.piece_prob[ww.starts]
        python_float = ww.forced[ww.starts].any()
    else:
        raise ValueError(f"token_to_word must be 'mean' or 'first', not {token_to_word!r}")
    return scores.astype(np.float64 if python_float else np.float32)


def keep_words(ww: WindowWords, scores: np.ndarray, token_counts: list[int], reduce_rate: float,
               rules: WordRules, drop_consecutive: bool, top: float) -> np.ndarray:
    """Word labels (1 keep, 0 drop) for one window: the percentile threshold over scores repeated once per
    target-LLM token, keep strictly above it (or equal to the top score when the threshold is the top)."""
    if len(scores) == 0:  # a window with no words (only special or dropped pieces): nothing to keep or drop
        return np.zeros(0, dtype=np.int8)
    scores = scores.copy()
    if drop_consecutive:
        first = np.percentile(scores, int(100 * reduce_rate))
        between, prev = False, None
        for i, w in enumerate(ww.words):
            if w in rules.force_set:
                if between:
                    between = False
                elif w == prev:
                    scores = scores.astype(np.float64)  # LLMLingua stores a Python 0.0 here
                    scores[i] = 0.0
                prev = w
            else:
                between |= bool(scores[i] > first)
    repeated = np.repeat(scores, np.asarray(token_counts, dtype=np.int64))
    if len(repeated) == 0:
        return np.zeros(len(scores), dtype=np.int8)
    threshold = np.percentile(repeated, int(100 * reduce_rate + 1))  # same dtype as scores
    labels = ((scores > threshold) | ((threshold == top) & (scores == threshold))).astype(np.int8)
    if drop_consecutive:
        last = None
        for i in np.flatnonzero(labels):
            w = ww.words[i]
            if w in rules.force_set and last == w:
                labels[i] = 0
            else:
                last = w
    return labels


def split_words(text: str) -> list[str]:
    """The word list LLMLingua reports for a context it did not compress."""
    return _WORD_SPLIT.findall(text)
