"""MOOSComp's ablation in miniature, on GSM8K: untrained head vs CE only (LLMLingua-2's recipe) vs CE + beta * S,
each with and without outlier fusion, at three rates, over several seeds.

    python -m compressors.moos_ablation [--gsm8k ../shared/data/gsm8k] [--out-dir ablation]
        [--variants 0,0.5,0.5:batch,0:dw10] [--seeds 0,1] [--test-samples 0] [--ship NAME]

A variant is "BETA[:batch][:dwW]": CE + BETA * S (0 = CE only), S per window (default) or pooled over the batch
(":batch"), number pieces' CE weighted W (":dw10"; default 1). The untrained head always runs. Every variant is
the MiniLM default with a fresh head (seeded by the run's seed) whose top layer + head are fine-tuned
(moos_default.train_variant: same data and schedule; the frozen bottom is computed once and shared) on the
first --train-samples GSM8K *train* questions (0 = all but the validation slice), labelled by
moos_default.gsm8k_labels. Validation = the last --val-samples *train* questions (never trained on): training's
held-out (best epoch) and the slice the shipped setting is chosen on. Evaluation uses the first --test-samples
*test* questions (0 = all 1,319), labelled by the same rule (held-out labels):
- per piece, rate-free: token accuracy and keep-F1 of argmax(keep) against the labels, and S;
- per rate and outlier setting, on compress_prompt's own word labels (force_reserve_digit off; each question
  all compressed in one call): a question word survives when every letter and digit of it reaches the LLM; scored
  against the labels (keep-F1, accuracy), plus the fraction of the question's numbers and of its solution
  words (labelled keep, no digit) that survive. A number is a run of digits with the separators inside it
  ("10,440,000", "2.00"): it survives when its digits do and no separator of it is dropped, whatever happens to
  letters joined to it ("30" of "30-minute"); `digit_words_kept`, the figure before 2026-12-03 (evening), also
  needs those letters. (Until 2026-12-03 the compressed text was re-split and aligned
  with moos_labels.label_words, which merged "5. 15" across a dropped sentence end and lost "400-meter" when
  only its hyphen was dropped: it under-counted numbers.)
Each cell is reported as the mean over --seeds and its spread (max - min). Writes ablation.json, ablation.md
and ablation.png to --out-dir, and every trained variant's tensors (shipped form) to --out-dir/variants; with
--ship NAME the first seed's NAME becomes the shipped default (compressors/data/moos_default_top.safetensors).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
import unicodedata

import numpy as np

from compkit.errors import CompkitError
from compkit.files import dumps_json, write_text
from . import moos_default as md
from . import train_moos


class CachedScorer:
    """Memoises a scorer by its input bytes: rates and outlier settings reuse one model pass."""

    def __init__(self, inner):
        self.inner, self.memo, self.seq_lens = inner, {}, getattr(inner, "seq_lens", None)

    def __call__(self, ids, mask):
        key = ids.tobytes() + mask.tobytes()
        if key not in self.memo:
            self.memo[key] = self.inner(ids, mask)
        return self.memo[key]


def _top_scorer_class():
    import torch

    from .moos_scorer import MASK_VALUE, TokenScorer, representation_outlier_z

    class TopScorer(TokenScorer):
        """TokenScorer whose frozen bottom (embeddings + the layers below the trained top) is memoised by input,
        shared by every variant: the variants differ only above it. The first batch is checked against the
        plain TokenScorer."""

        def __init__(self, model, train_layers: int, memo: dict):
            super().__init__(model)
            self.k, self.memo, self.checked = model.config.num_hidden_layers - train_layers, memo, False

        def forward(self, input_ids, attention_mask):
            base = self.model.base_model
            mask = attention_mask.to(torch.float32)
            additive = ((1.0 - mask) * MASK_VALUE)[:, None, None, :]
            key = input_ids.numpy().tobytes() + attention_mask.numpy().tobytes()
            if key not in self.memo:
                h = base.embeddings(input_ids=input_ids.to(torch.long))
                for layer in base.encoder.layer[: self.k]:
                    h = layer(h, additive)
                self.memo[key] = h
            hidden = self.memo[key]
            for layer in base.encoder.layer[self.k :]:
                hidden = layer(hidden, additive)
            keep_prob = torch.softmax(self.model.classifier(hidden), dim=-1)[..., 1]
            out = keep_prob, representation_outlier_z(hidden, mask)
            if not self.checked:
                ref = TokenScorer.forward(self, input_ids, attention_mask)
                if not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, ref)):
                    raise RuntimeError("the memoised-bottom scorer disagrees with TokenScorer")
                self.checked = True
            return out

    return TopScorer


def compressor_for(model, tokenizer, bottom_memo: dict | None = None):
    """MOOSCompressor on (a copy of) the model; with bottom_memo, the frozen bottom's outputs are memoised there
    (for variants that share it: top-layer fine-tunes of one base)."""
    from .moos import EagerScorer, MOOSCompressor, add_force_token_slots
    from .moos_scorer import TokenScorer

    model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
    add_force_token_slots(model, tokenizer)
    scorer = TokenScorer(model.eval()) if bottom_memo is None else _top_scorer_class()(model.eval(), md.TRAIN_LAYERS,
                                                                                         bottom_memo)
    return MOOSCompressor(tokenizer, CachedScorer(EagerScorer(scorer)), outlier="representation")


def setting(comp, outlier: str, weight: float, rarity):
    c = copy.copy(comp)
    c.outlier, c.outlier_weight, c.rarity_table = outlier, float(weight), rarity
    return c


def _folded(text: str) -> tuple[str, list[int]]:
    """text lower-cased and accent-stripped as an uncased WordPiece tokenizer sees it, and for each character of
    the result the index of the original character it came from."""
    out, where = [], []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFD", ch.lower()):
            if unicodedata.category(c) != "Mn":
                out.append(c), where.append(i)
    return "".join(out), where


def kept_characters(questions: list[str], words: list[str], labels: list[int]) -> tuple[list[np.ndarray], int]:
    """Which characters of each question reach the LLM: (kept [len(question)] bool per question, words that could
    not be placed); see character_labels."""
    marks, unplaced = character_labels(questions, words, labels)
    return [m == 1 for m in marks], unplaced


def character_labels(questions: list[str], words: list[str], labels: list[int]) -> tuple[list[np.ndarray], int]:
    """The compressor's own words (compress_prompt's word labels for all the questions, in order) placed back on
    the texts: per character 1 kept, 0 dropped, -1 in no listed word. Returns (marks [len(question)] int8 per
    question, words that could not be placed). A word is placed at its next occurrence; what it skips over may
    hold whitespace and punctuation (with nothing to drop, compress_prompt's word list leaves some out) but no
    letter or digit, else the word is counted as not placed."""
    folded = [_folded(q) for q in questions]
    text = "\n".join(t for t, _ in folded)
    owner = []  # per character of text: (question, original index), None for the joins
    for qi, (t, where) in enumerate(folded):
        owner += [(qi, j) for j in where] + [None]
    marks, pos, unplaced, after_unknown = [np.full(len(q), -1, dtype=np.int8) for q in questions], 0, 0, False
    for w, lab in zip(words, labels):
        w = w.lower()
        at = text.find(w, pos) if w and not (w.startswith("[") and w.endswith("]")) else -1
        # [UNK] and the like, or a misplacement: its characters stay unkept; the word after an [UNK] may skip
        # over the letters it stood for
        if at < 0 or (not after_unknown and any(c.isalnum() for c in text[pos:at])):
            unplaced += 1
            after_unknown = w.startswith("[")
            continue
        after_unknown = False
        for qi, j in (owner[k] for k in range(at, at + len(w))):
            marks[qi][j] = 1 if lab else 0
        pos = at + len(w)
    return marks, unplaced


def surviving_words(question: str, words: list[str], kept: np.ndarray) -> np.ndarray:
    """Per question word (the offline splitter's surface words, in order): every letter and digit of it kept
    (a word of punctuation only: all of it)."""
    out, pos = np.zeros(len(words), dtype=bool), 0
    for i, w in enumerate(words):
        at = question.find(w, pos)
        if at < 0:
            continue
        alnum = [at + j for j, c in enumerate(w) if c.isalnum()] or list(range(at, at + len(w)))  # punctuation: itself
        out[i] = bool(kept[alnum].all())
        pos = at + len(w)
    return out


NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # "10,440,000", "2.00", the "30" of "30-minute", the "3" of "3rd"


def score_compression(questions, labelled, word_labels) -> dict:
    """Scores one compression of every question against its labels. A question word survives when all of its
    letters and digits reach the LLM, read from compress_prompt's own word labels placed back on the text
    (re-splitting the compressed text cannot tell "5,000" kept from "5. 15" across a dropped sentence end)."""
    tp = fp = fn = correct = total = 0
    nums, nums_kept, sol, sol_kept, kept_words, spans, spans_kept = 0, 0, 0, 0, 0, 0, 0
    marks, unplaced = character_labels(questions, *word_labels)
    for q, lab, mark in zip(questions, labelled, marks):
        kept = mark == 1
        words, y = lab["words"], np.array(lab["labels"], dtype=bool)
        pred = surviving_words(q, words, kept)
        digit = np.array([any(c.isdigit() for c in w) for w in words], dtype=bool)
        tp += int((pred & y).sum()); fp += int((pred & ~y).sum()); fn += int((~pred & y).sum())
        correct += int((pred == y).sum()); total += len(y)
        nums += int(digit.sum()); nums_kept += int((pred & digit).sum())
        sol += int((y & ~digit).sum()); sol_kept += int((pred & y & ~digit).sum()); kept_words += int(pred.sum())
        for m in NUMBER.finditer(q):  # digits kept, and no separator dropped (unlisted ones: at rate 1 none is)
            span = mark[m.start():m.end()]
            digits = np.array([c.isdigit() for c in m.group()])
            spans += 1
            spans_kept += int((span[digits] == 1).all() and not (span == 0).any())
    return {"keep_f1": 2 * tp / max(2 * tp + fp + fn, 1), "accuracy": correct / max(total, 1),
            "numbers_kept": spans_kept / max(spans, 1), "digit_words_kept": nums_kept / max(nums, 1),
            "solution_words_kept": sol_kept / max(sol, 1),
            "words_kept": kept_words / max(total, 1), "unplaced_words": unplaced}


def word_labels(comp, questions: list[str], rate: float) -> tuple[list[str], list[int]]:
    """compress_prompt's (words, keep labels) over all the questions, from its return_word_label output."""
    sep, lsep = "\t\t|\t\t", " "
    out = comp.compress_prompt(questions, rate=rate, return_word_label=True, word_sep=sep, label_sep=lsep)
    pairs = [p.rsplit(lsep, 1) for p in out["fn_labeled_original_prompt"].split(sep) if p]
    return [w for w, _ in pairs], [int(l) for _, l in pairs]


@dataclasses.dataclass(frozen=True)
class Variant:
    beta: float | None  # None = the untrained head
    cosine_form: str = "sample"
    digit_weight: float = 1.0

    @property
    def name(self) -> str:
        if self.beta is None:
            return "untrained"
        base = "CE" if self.beta == 0 else f"CE+{self.beta:g}*S"
        tags = (["pooled"] if self.beta and self.cosine_form == "batch" else []) + \
            ([f"dw{self.digit_weight:g}"] if self.digit_weight != 1 else [])
        return base + (f"[{','.join(tags)}]" if tags else "")


def parse_variants(text: str) -> list[Variant]:
    """'0,0.5,0.5:batch,0:dw10' -> the untrained head + those variants (see the module docstring)."""
    out = [Variant(None)]
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        beta, *tags = item.split(":")
        form, dw = "sample", 1.0
        try:
            b = float(beta)
            for t in tags:
                if t in ("batch", "sample"):
                    form = t
                elif t.startswith("dw"):
                    dw = float(t[2:])
                else:
                    raise ValueError
        except ValueError:
            raise train_moos.TrainError(f"--variants: {item!r} is not BETA[:batch][:dwW] (e.g. 0.5:batch:dw10)") from None
        if b < 0 or not dw > 0:
            raise train_moos.TrainError(f"--variants: {item!r} needs beta >= 0 and a digit weight > 0")
        out.append(Variant(b, form, dw))
    if len({v.name for v in out}) != len(out):
        raise train_moos.TrainError(f"--variants {text!r} repeats a variant")
    return out


def compress_all(comp, questions, labels, weights, rates, rarity) -> dict:
    res = {}
    for kind, w in [("none", 0.0)] + [(k, w) for k in ("representation", "rarity") for w in weights]:
        c = setting(comp, "representation" if kind == "none" else kind, w, rarity)
        for rate in rates:
            res[f"{kind}:{w:g}@{rate:g}"] = score_compression(questions, labels, word_labels(c, questions, rate))
    return res


def run(gsm8k: str, out_dir: str, *, train_samples: int, val_samples: int, test_samples: int, epochs: int,
        variants: list[Variant], weights, rates, seeds, ship: str | None = None, threads: int = 1,
        progress: bool = True) -> dict:
    import torch

    from .moos import default_token_classifier
    from .rarity import RarityTable

    train_rows, val_rows = md.split_train(md.read_gsm8k(os.path.join(gsm8k, "train.jsonl")), train_samples, val_samples)
    test_rows = md.read_gsm8k(os.path.join(gsm8k, "test.jsonl"), test_samples)
    sets = {"val": ([r["question"] for r in val_rows], [md.gsm8k_labels(r["question"], r["answer"]) for r in val_rows]),
            "test": ([r["question"] for r in test_rows], [md.gsm8k_labels(r["question"], r["answer"]) for r in test_rows])}
    results = {"config": {"train_samples": len(train_rows), "val_samples": len(val_rows),
                          "val": f"last {len(val_rows)} GSM8K train questions (not trained on)",
                          "test_samples": len(test_rows), "epochs": epochs, "variants": [v.name for v in variants],
                          "outlier_weights": list(weights), "rates": list(rates), "seeds": list(seeds),
                          "train_layers": md.TRAIN_LAYERS, "threads": threads}, "runs": {}}
    cache: dict = {}
    bottom_memo: dict = {}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rarity = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            labels_path, val_path = os.path.join(tmp, "labels.jsonl"), os.path.join(tmp, "val.jsonl")
            md.write_labels(train_rows, labels_path)
            md.write_labels(val_rows, val_path)
            for v in variants:
                for seed in seeds:
                    t0 = time.time()
                    model, tokenizer = default_token_classifier(seed, trained=False)
                    info = {"seed": seed}
                    if v.beta is not None:
                        m = md.train_variant(labels_path, os.path.join(tmp, "ckpt"), beta=v.beta,
                                             cosine_form=v.cosine_form, digit_weight=v.digit_weight, epochs=epochs,
                                             seed=seed, eval_path=val_path, threads=threads,
                                             model_and_tokenizer=(model, tokenizer), progress=progress, cache=cache)
                        info["val_pieces"], info["best_epoch"] = m["best"], m["best_epoch"]
                    split = train_moos.Split(model, md.TRAIN_LAYERS, cache)
                    test_w = train_moos.encode(sets["test"][1], tokenizer)
                    info["test_pieces"] = train_moos.evaluate(split, test_w, 32, tokenizer.pad_token_id, "sample", "test")
                    comp = compressor_for(model, tokenizer, bottom_memo)
                    if rarity is None:  # on the compressor's tokenizer (with its force-token slots)
                        rarity = RarityTable.from_texts(comp.tokenizer, [r["question"] for r in train_rows],
                                                        source=f"GSM8K train, first {len(train_rows)} questions")
                    for key, (questions, labels) in sets.items():
                        info[f"{key}_compression"] = compress_all(comp, questions, labels, weights, rates, rarity)
                    info["seconds"] = round(time.time() - t0, 1)
                    results["runs"].setdefault(v.name, {})[str(seed)] = info
                    if progress:
                        c = info["test_compression"][f"none:0@{rates[len(rates) // 2]:g}"]
                        print(f"{v.name} seed {seed}: test keep-F1 {info['test_pieces']['keep_f1']:.4f}  "
                              f"S {info['test_pieces']['S']:.4f}  @{rates[len(rates) // 2]:g}: numbers "
                              f"{c['numbers_kept']:.4f} solution words {c['solution_words_kept']:.4f}  "
                              f"({info['seconds']:.0f} s)", file=sys.stderr, flush=True)
                    if v.beta is not None:  # every trained variant's tensors, in the shipped form
                        meta = md.shipped_metadata(md.provenance(len(train_rows), v.beta, v.digit_weight, v.cosine_form),
                                                   v.beta, v.digit_weight, v.cosine_form, epochs, seed,
                                                   info["val_pieces"], len(val_rows))
                        os.makedirs(os.path.join(out_dir, "variants"), exist_ok=True)
                        state = md.trained_state(model)
                        md.save_shipped(state, os.path.join(out_dir, "variants", f"{v.name}-seed{seed}.safetensors"), meta)
                        if ship == v.name and seed == seeds[0]:
                            md.save_shipped(state, md.SHIPPED, meta)
                            results["shipped"] = f"{v.name} seed {seed}"
                    write_outputs(results, out_dir)  # after every run: a long ablation cut short still reports
    finally:
        torch.set_num_threads(old_threads)
    return results


SAME_CONFIG = ("train_samples", "val_samples", "test_samples", "epochs", "outlier_weights", "rates", "train_layers")


def merge(paths: list[str]) -> dict:
    """One ablation of several runs' ablation.json with the same data, epochs, weights and rates and disjoint
    seeds (more seeds later, or split over machines): the variants they all ran, every seed of each, in seed
    order, so that the seed-paired comparisons pair the same seeds."""
    loaded = []
    for path in paths:
        try:
            with open(path) as f:
                r = json.load(f)
            r["config"], r["runs"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise train_moos.TrainError(f"--merge {path} is not an ablation.json of this command ({e})") from None
        loaded.append(r)
    first = loaded[0]["config"]
    for path, r in zip(paths, loaded):
        differs = [k for k in SAME_CONFIG if r["config"].get(k) != first.get(k)]
        if differs:
            raise train_moos.TrainError(f"--merge {path} differs from {paths[0]} in {', '.join(differs)}: "
                                        "only runs of the same configuration merge")
    variants = [v for v in first["variants"] if all(v in r["runs"] for r in loaded)]  # the untrained head first
    runs: dict = {}
    for name in variants:
        by_seed = {}
        for path, r in zip(paths, loaded):
            for seed, info in r["runs"].get(name, {}).items():
                if seed in by_seed:
                    raise train_moos.TrainError(f"--merge {path} repeats seed {seed} of {name}: merge runs of other seeds")
                by_seed[seed] = info
        runs[name] = {k: by_seed[k] for k in sorted(by_seed, key=int)}
    seeds = sorted({int(k) for by_seed in runs.values() for k in by_seed})
    config = dict(first, variants=variants, seeds=seeds, merged_from=list(paths))
    return {"config": config, "runs": runs}


def write_outputs(results: dict, out_dir: str) -> None:
    results["summary"] = summarise(results)
    results["choice"] = choose(results)
    results["choice_solution_words"] = choose(results, numbers_first=False)  # the target: solution words only
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "ablation.json"), dumps_json(results).rstrip("\n"))  # as json.dump wrote it
    write_text(os.path.join(out_dir, "ablation.md"), markdown(results))
    plot(results, os.path.join(out_dir, "ablation.png"))


def cell(values) -> dict:
    return {"mean": float(np.mean(values)), "spread": float(np.max(values) - np.min(values)),
            "values": [float(x) for x in values]}


def summarise(results: dict) -> dict:
    """Per variant: mean and spread (max - min over seeds) of every figure."""
    out = {}
    for name, by_seed in results["runs"].items():
        runs = list(by_seed.values())
        s = {f"test_pieces.{k}": cell([r["test_pieces"][k] for r in runs]) for k in ("token_accuracy", "keep_f1", "S")}
        for part in ("val_compression", "test_compression"):
            for key in runs[0][part]:
                for metric in runs[0][part][key]:
                    s[f"{part}.{key}.{metric}"] = cell([r[part][key][metric] for r in runs])
        out[name] = s
    return out


NUMBERS_TOLERANCE = 0.005


def paired_gain(values, ce_values) -> dict:
    """Seed-paired comparison with CE (the same seeds init both heads and shuffle both runs): per-seed gains, how
    many seeds gain, and a one-sided paired t-test (H1: the setting keeps more)."""
    d = np.asarray(values) - np.asarray(ce_values)
    out = {"gains": [float(x) for x in d], "mean_gain": float(d.mean()), "seeds_up": int((d > 0).sum()), "seeds": len(d)}
    if len(d) >= 2 and d.std() > 0:
        from scipy import stats
        out["p_one_sided"] = float(stats.ttest_rel(values, ce_values, alternative="greater").pvalue)
    return out


def choose(results: dict, rate: float = 0.33, numbers_first: bool = True) -> dict:
    """A rule that picks one setting on VALIDATION (train questions), never test: among the trained MOOSComp
    settings (a cosine term and/or outlier fusion), the highest mean share of solution words kept at `rate`;
    with numbers_first (the rule the shipped default is picked by), only among those whose share of numbers kept
    at their worst rate is within NUMBERS_TOLERANCE of the best setting's (a dropped number breaks a math
    question, a dropped solution word seldom does). Then, on test: whether it beats CE there by more than both
    spreads, the seed-paired gain and its one-sided p, and whether it keeps >= 99% of numbers at every rate."""
    summ, rates = results["summary"], results["config"]["rates"]
    if "CE" not in summ or f"{rate:g}" not in [f"{r:g}" for r in rates]:
        return {}
    candidates = []
    for name, s in summ.items():
        if name == "untrained":
            continue
        for key in s:
            if key.startswith("val_compression.") and key.endswith(f"@{rate:g}.solution_words_kept"):
                outlier = key[len("val_compression."):].split("@")[0]  # "rarity:0.1": not split at its "."
                if name.startswith("CE+") or outlier != "none:0":  # a MOOSComp setting
                    val_numbers = min(s[f"val_compression.{outlier}@{r:g}.numbers_kept"]["mean"] for r in rates)
                    candidates.append((val_numbers, s[key]["mean"], name, outlier))
    if not candidates:
        return {}
    floor = max(c[0] for c in candidates) - NUMBERS_TOLERANCE if numbers_first else -1.0
    _, _, name, outlier = max((c for c in candidates if c[0] >= floor), key=lambda c: c[1])
    sol = lambda n, o, part="test": summ[n][f"{part}_compression.{o}@{rate:g}.solution_words_kept"]
    b, ce = sol(name, outlier), sol("CE", "none:0")
    numbers = {f"{r:g}": summ[name][f"test_compression.{outlier}@{r:g}.numbers_kept"]["mean"] for r in rates}
    rule = f"best validation solution words kept @{rate:g} among the CE + beta*S / outlier settings"
    if numbers_first:
        rule += f" that keep validation numbers (worst rate) within {NUMBERS_TOLERANCE:g} of the best ({floor + NUMBERS_TOLERANCE:.4f})"
    return {"rule": rule,
            "variant": name, "outlier": outlier, "val_solution_words": sol(name, outlier, "val")["mean"],
            "val_ce_solution_words": sol("CE", "none:0", "val")["mean"],
            "test_solution_words": b["mean"], "test_ce_solution_words": ce["mean"],
            "test_gain": b["mean"] - ce["mean"], "spread": max(b["spread"], ce["spread"]),
            "beats_ce": b["mean"] - ce["mean"] > max(b["spread"], ce["spread"]),
            "paired": paired_gain(b["values"], ce["values"]) if len(b.get("values", [])) == len(ce.get("values", [])) > 0 else {},
            "test_numbers_kept": numbers, "numbers_ok": min(numbers.values()) >= 0.99}


def fmt(c: dict) -> str:
    return f"{c['mean']:.4f} ±{c['spread'] / 2:.4f}"


def markdown(results: dict) -> str:
    cfg, summ = results["config"], results["summary"]
    lines = [f"GSM8K: {cfg['train_samples']} train questions to train, validation = {cfg['val']}, "
             f"{cfg['test_samples']} test questions to evaluate; top {cfg['train_layers']} layer + head, "
             f"{cfg['epochs']} epochs, seeds {', '.join(map(str, cfg['seeds']))}. Cells: mean over seeds ± half "
             "the spread (max - min).", "",
             "| variant | test token acc | test keep-F1 | test S |", "|---|---|---|---|"]
    for name, s in summ.items():
        lines.append(f"| {name} | {fmt(s['test_pieces.token_accuracy'])} | {fmt(s['test_pieces.keep_f1'])} | "
                     f"{fmt(s['test_pieces.S'])} |")
    for part, title in (("test", "Test"), ("val", "Validation (train questions not trained on)")):
        lines += ["", f"{title}, compression (force_reserve_digit off): keep-F1 of the kept words against the labels, "
                  "share of the question's numbers and solution words kept, share of words kept.", "",
                  "| variant | outlier | rate | keep-F1 | numbers kept | solution words kept | words kept |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in summ.items():
            keys = [k[len(part) + 13 : -len(".keep_f1")] for k in s if k.startswith(f"{part}_compression.")
                    and k.endswith(".keep_f1")]
            for key in keys:
                outlier, rate = key.split("@")
                c = lambda m: fmt(s[f"{part}_compression.{key}.{m}"])
                lines.append(f"| {name} | {outlier} | {rate} | {c('keep_f1')} | {c('numbers_kept')} | "
                             f"{c('solution_words_kept')} | {c('words_kept')} |")
    for title, key in (("Choice", "choice"), ("Choice for solution words alone", "choice_solution_words")):
        ch = results.get(key)
        if not ch:
            continue
        pg = ch.get("paired", {})
        paired = (f"; seed-paired gain {pg['mean_gain']:+.4f}, up on {pg['seeds_up']} of {pg['seeds']} seeds"
                  + (f", one-sided paired t-test p = {pg['p_one_sided']:.3f}" if "p_one_sided" in pg else "")) if pg else ""
        lines += ["", f"{title} ({ch['rule']}): {ch['variant']} with outlier {ch['outlier']} (validation "
                  f"{ch['val_solution_words']:.4f} vs CE {ch['val_ce_solution_words']:.4f}). On test: "
                  f"{ch['test_solution_words']:.4f} vs CE {ch['test_ce_solution_words']:.4f} (gain "
                  f"{ch['test_gain']:+.4f}, seed spread {ch['spread']:.4f}: "
                  f"{'beats' if ch['beats_ce'] else 'does not beat'} CE by more than the spread{paired}); numbers kept "
                  + ", ".join(f"{v:.4f} @{r}" for r, v in ch["test_numbers_kept"].items())
                  + f" ({'>=' if ch['numbers_ok'] else 'not all >='} 99%)."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = results["config"]["rates"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, s in results["summary"].items():
        for a, metric in ((ax[0], "solution_words_kept"), (ax[1], "numbers_kept")):
            cells = [s[f"test_compression.none:0@{r:g}.{metric}"] for r in rates]
            a.errorbar(rates, [c["mean"] for c in cells], yerr=[c["spread"] / 2 for c in cells], fmt="o-",
                       capsize=3, label=name)
        ax[2].errorbar(s["test_pieces.S"]["mean"], s["test_pieces.keep_f1"]["mean"], xerr=s["test_pieces.S"]["spread"] / 2,
                       yerr=s["test_pieces.keep_f1"]["spread"] / 2, fmt="o", capsize=3, label=name)
    ax[0].set_xlabel("rate"), ax[0].set_ylabel("test solution words kept (no outlier)")
    ax[1].set_xlabel("rate"), ax[1].set_ylabel("test numbers kept (no outlier)")
    ax[2].set_xlabel("test S"), ax[2].set_ylabel("test keep-F1 (pieces)")
    for a in ax:
        a.grid(alpha=0.3), a.legend(fontsize=7)
    fig.suptitle(f"GSM8K: {results['config']['test_samples']} test questions, seeds "
                 f"{','.join(map(str, results['config']['seeds']))} (bars: half the seed spread)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.moos_ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gsm8k", default=md.DEFAULT_GSM8K)
    ap.add_argument("--out-dir", default="ablation")
    ap.add_argument("--train-samples", type=int, default=1200, help="first N train questions (0 = all but validation)")
    ap.add_argument("--val-samples", type=int, default=300, help="validation: the last N train questions")
    ap.add_argument("--test-samples", type=int, default=0, help="first N test questions (0 = all 1,319)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", default="0,0.5,0:dw10,0.5:dw10,0.25,1,0.5:batch,0:dw3,1:dw10",
                    help="BETA[:batch][:dwW] list (the untrained head always runs)")
    ap.add_argument("--seeds", default="0,1", help="head init and shuffling seeds; cells are mean and spread")
    ap.add_argument("--weights", default="0.1,0.3", help="outlier weights, for both outlier kinds")
    ap.add_argument("--rates", default="0.25,0.33,0.5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ship", default=None, help="write this variant's (first seed's) model as the shipped default")
    ap.add_argument("--merge", nargs="+", metavar="ABLATION_JSON",
                    help="train nothing: merge these runs' ablation.json (same configuration, other seeds) into --out-dir")
    args = ap.parse_args(argv)
    try:
        if args.merge:
            write_outputs(merge(args.merge), args.out_dir)
            print(f"wrote {args.out_dir}/ablation.json, ablation.md, ablation.png")
            return 0
        variants, weights, rates = parse_variants(args.variants), floats(args.weights), floats(args.rates)
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        if any(w < 0 for w in weights) or not all(0 < r <= 1 for r in rates) or not seeds or args.threads < 1:
            raise train_moos.TrainError("need --weights >= 0, --rates in (0, 1], at least one seed and --threads >= 1")
        if args.ship is not None and args.ship not in [v.name for v in variants[1:]]:
            raise train_moos.TrainError(f"--ship {args.ship!r} is not one of the trained variants "
                                        f"{[v.name for v in variants[1:]]}")
        run(args.gsm8k, args.out_dir, train_samples=args.train_samples, val_samples=args.val_samples,
            test_samples=args.test_samples, epochs=args.epochs, variants=variants, weights=weights, rates=rates,
            seeds=seeds, ship=args.ship, threads=args.threads)
    except (CompkitError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}/ablation.json, ablation.md, ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
