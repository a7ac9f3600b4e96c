"""Shared test vectors for the native core (runtime_cpp), written by the Python reference.

    write_vectors(compressor, evo, out_path)

writes one JSON file (plus `<out_path>.evo.bin` when an EvoComp model is given) holding:
- texts: the shipped corpus (compressors/data/prompts.jsonl) whole and split into sentences, plus
  hand-written edge cases (CJK, accents, emoji, numbers, code, control characters, long words);
- per text: tokenize() pieces and token ids (no special tokens);
- windows: every model input the compressor built, with the keep probabilities (and outlier z) the
  model gave, so a native pipeline fed the same probabilities must reproduce the texts exactly;
- compress: compressed texts at rates 0.25, 0.33 and 0.5, with and without force tokens,
  force_reserve_digit, drop_consecutive, outlier fusion and first-piece word scores (every case on
  the edge cases, `cases_per_text` of them in rotation on the corpus texts);
- evo: score vectors (ties included) with kept indices from compressors.evo.select, and, when a model
  is given, its inputs (in the .bin: visual tokens, text embeddings, text mask as float32) and logits.
The windows are scored one at a time (batch 1, no padding), as a phone runs them.
"""
from __future__ import annotations

import copy
import json
import os
import re

import numpy as np

from compkit.files import write_bytes, write_text
from compressors.corpus import corpus_texts

SCHEMA = 1
RATES = (0.25, 0.33, 0.5)
FORCE_TOKENS = ["\n", ".", "?", "!", ",", "New York", "e.g."]  # single- and multi-piece ones
OUTLIER_WEIGHT = 0.5

EDGE_CASES = [
    "Hello, world! How are you today?",
    "Café au lait, naïve résumé, Ångström, São Paulo, Zürich, Øresund, Dvořák, İstanbul.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Mixed 中文 and English: 机器学习 (machine learning) is 很有趣.",
    "Emoji test 😀🎉👍🏽 and flags 🇫🇷🇯🇵 with text ❤️ ✨.",
    "Numbers: 3.14159, 1,000,000, -42, 6.02e23, 50%, $19.99, €5, ½ and ²³ and ٣٤٥.",
    "def add(a, b):\n    return a + b  # sum of two numbers\n\nprint(add(2, 3))",
    "for (int i = 0; i < n; ++i) { total += values[i] * weights[i]; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;",
    "URL https://example.com/path?query=1&lang=en#frag and email someone@example.org.",
    "Tabs\tand\tnewlines\nand\r\nwindows line ends, non\u00a0breaking\u2009spaces\u3000here.",
    "Zero\u200bwidth\u200cjoiners\u200d and soft\u00adhyphen and BOM\ufeff inside.",
    "Control \x01chars\x07 and \x7f delete and replacement \ufffd marks.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious antidisestablishmentarianism.",
    "a" * 120 + " is a very long token, and so is " + "xyz" * 40 + ".",
    "Ünïcödé ÀÉÎÕÜ çÇ ßẞ ﬁ ﬂ ligatures Ⅻ ① ＡＢＣ full-width ｶﾀｶﾅ.",
    "Greek Ελληνικά ΣΊΣΥΦΟΣ, Cyrillic Привет мир, Arabic مرحبا بالعالم, Hebrew שלום, Hindi नमस्ते दुनिया, Thai สวัสดีครับ.",
    "New York is big. New York is busy. e.g. this, e.g. that... New York!",
    "Wait... what?! Really?? Yes!!! (Maybe) [not] {sure} <tag> \"quoted\" 'single' `back`",
    "I don't think it's true; we've seen they're wrong, I'm sure, do not worry, isn't it?",
    "[CLS] [SEP] [PAD] [UNK] [MASK] <s> </s> <unk> <pad> [NEW0] [NEW7] literal special strings.",
    "Version v2.18.3 at 09:05 UTC, p99 4.2 s vs 120 ms; ids #4521, @alice, x^2 + y_1 = z~.",
    ". . . , , , ? ! . . .",
    "a",
    "   leading and trailing spaces   ",
]


def _sentences(texts: list[str], limit: int) -> list[str]:
    out, seen = [], set()
    for t in texts:
        for s in re.split(r"(?<=[.!?。！？])\s+|\n+", t):
            s = s.strip()
            if s and s not in seen:
                seen.add(s)
                out.append(s)
    return out[:limit]


class _RecordingScorer:
    """Runs the compressor's own scorer one window at a time and keeps what it said, per window."""

    seq_lens = None

    def __init__(self, scorer):
        self.scorer = scorer
        self.windows: dict[tuple, dict] = {}

    def __call__(self, input_ids, attention_mask):
        assert input_ids.shape[0] == 1 and attention_mask.all(), "windows are recorded one at a time, unpadded"
        key = tuple(int(i) for i in input_ids[0])
        if key not in self.windows:
            out = self.scorer(input_ids, attention_mask)
            self.windows[key] = {k: np.asarray(v[0], dtype=np.float32) for k, v in out.items()}
        return {k: v[None] for k, v in self.windows[key].items()}


def _cases() -> list[dict]:
    cases = [dict(rate=r) for r in RATES]
    cases += [dict(rate=0.33, force_tokens=FORCE_TOKENS), dict(rate=0.5, force_tokens=FORCE_TOKENS, drop_consecutive=True),
              dict(rate=0.25, force_tokens=["\n", "."], drop_consecutive=True), dict(rate=0.5, force_reserve_digit=True),
              dict(rate=0.33, force_tokens=FORCE_TOKENS, force_reserve_digit=True, drop_consecutive=True),
              dict(rate=0.33, outlier_weight=OUTLIER_WEIGHT), dict(rate=0.5, token_to_word="first"),
              dict(rate=0.5, outlier_weight=OUTLIER_WEIGHT, force_tokens=FORCE_TOKENS, force_reserve_digit=True),
              dict(rate=1.0), dict(rate=0.5, target_token=10)]
    return cases


def _evo_vectors(evo, bin_path: str | None) -> dict:
    from compressors.evo import select

    rng = np.random.default_rng(0)
    cases = []
    for n in (1, 2, 7, 64, 576):
        for kind in ("normal", "ties", "constant"):
            if kind == "normal":
                s = rng.standard_normal(n).astype(np.float32)
            elif kind == "ties":
                s = rng.integers(0, 4, n).astype(np.float32)
            else:
                s = np.full(n, 0.25, dtype=np.float32)
            for ratio in (1.0, 2.0, 2.5, 3.0, 4.0):
                cases.append({"scores": s.tolist(), "k": None, "ratio": ratio, "kept": select(s, ratio=ratio).tolist()})
            k = max(1, n // 5)
            cases.append({"scores": s.tolist(), "k": k, "ratio": None, "kept": select(s, k=k).tolist()})
    out = {"select": cases}
    if evo is not None:
        import torch

        v, e, m = evo.example_inputs(seed=0)
        with torch.no_grad():
            logits = evo(v, e, m)[0].numpy().astype(np.float32)
        arrays = [v.numpy().astype(np.float32), e.numpy().astype(np.float32), m.numpy().astype(np.float32)]
        write_bytes(bin_path, b"".join(np.ascontiguousarray(a).astype("<f4").tobytes() for a in arrays))
        out["model"] = {"bin": os.path.basename(bin_path), "visual_shape": list(v.shape[1:]), "text_shape": list(e.shape[1:]),
                        "keep_logits": logits.tolist(),
                        "kept": {str(r): select(logits, ratio=r).tolist() for r in (2.0, 3.0, 4.0)}}
    return out


def write_vectors(compressor, evo, out_path, *, max_sentences: int = 300, cases_per_text: int = 3) -> str:
    """Write the vectors JSON for a MOOSCompressor (and an EvoCompressor or None); returns out_path."""
    from compressors.token_count import HFTokenCounter

    if not isinstance(compressor.counter, HFTokenCounter) or compressor.counter.tokenizer is not compressor.tokenizer:
        raise ValueError("vectors need the offline default token counter (the compressor's own tokenizer): "
                         "the native core counts with it")
    recorder = _RecordingScorer(compressor.scorer)
    base = compressor.with_scorer(recorder)
    base.max_batch_size = 1
    # outlier fusion needs the exported representation outlier (the rarity table stays in Python)
    with_outlier = compressor.outlier == "representation" and getattr(compressor.torch_module, "with_outlier", False)
    cases = [c for c in _cases() if with_outlier or "outlier_weight" not in c]
    corpus = corpus_texts()
    texts = EDGE_CASES + corpus + _sentences(corpus, max_sentences)
    tok = compressor.tokenizer
    compress = []
    for i, text in enumerate(texts):
        if i < len(EDGE_CASES):  # every case on the edge cases; the corpus gets them in rotation
            picked = cases
        else:
            picked = [cases[(i * cases_per_text + j) % len(cases)] for j in range(min(cases_per_text, len(cases)))]
        for case in picked:
            c = copy.copy(base)
            c.outlier_weight = case.get("outlier_weight", 0.0)
            args = {k: v for k, v in case.items() if k != "outlier_weight"}
            res = c.compress_prompt(text, **args)
            compress.append({"text": i, "outlier_weight": c.outlier_weight, "rate": case["rate"],
                             "target_token": case.get("target_token", -1), "force_tokens": case.get("force_tokens", []),
                             "force_reserve_digit": case.get("force_reserve_digit", False),
                             "drop_consecutive": case.get("drop_consecutive", False),
                             "token_to_word": case.get("token_to_word", "mean"),
                             "compressed": res["compressed_prompt"], "origin_tokens": res["origin_tokens"],
                             "compressed_tokens": res["compressed_tokens"]})
    windows = [{"ids": list(k), **{name: v.tolist() for name, v in out.items()}} for k, out in recorder.windows.items()]
    decode = [{"tokens": p, "text": tok.convert_tokens_to_string(p)}
              for p in (tok.tokenize(t)[:60] for t in texts[: len(EDGE_CASES) + 40]) if p]
    bin_path = os.fspath(out_path) + ".evo.bin"
    data = {
        "schema": SCHEMA, "family": compressor.family, "provenance": compressor.provenance,
        "token_counter": compressor.counter.name, "max_seq_len": compressor.max_seq_len,
        "max_force_token": compressor.max_force_token, "outlier": compressor.outlier,
        "texts": texts,
        "pieces": [tok.tokenize(t) for t in texts],
        "token_ids": [tok(t, add_special_tokens=False)["input_ids"] for t in texts],
        "decode": decode,
        "windows": windows,
        "compress": compress,
        "evo": _evo_vectors(evo, bin_path),
    }
    write_text(os.fspath(out_path), json.dumps(data, ensure_ascii=False, allow_nan=False))
    return os.fspath(out_path)
