"""MOOSComp's ablation in miniature, on GSM8K: untrained head vs CE only (LLMLingua-2's recipe) vs CE + beta * S,
each with and without outlier fusion, at three rates.

    python -m compressors.moos_ablation [--gsm8k ../shared/data/gsm8k] [--out-dir ablation] [--ship-beta 0.5]

Every variant is the MiniLM default with a fresh seeded head whose top layer + head are fine-tuned
(moos_default.train_variant: same seed, data and schedule; the frozen bottom is computed once and shared) on
the first --train-samples GSM8K *train* questions, labelled by moos_default.gsm8k_labels. Evaluation uses the
first --test-samples *test* questions, labelled by the same rule (held-out labels):
- per piece, rate-free: token accuracy and keep-F1 of argmax(keep) against the labels, and S;
- per rate and outlier setting, on compress_prompt's output (force_reserve_digit off): the kept words are
  aligned back onto the question's words with LLMLingua-2's own alignment (moos_labels.label_words) and scored
  against the labels (keep-F1, accuracy), plus the fraction of the question's numbers and of its
  solution words (labelled keep, no digit) that survive.
Writes ablation.json, ablation.md and ablation.png to --out-dir; with --ship-beta B the CE + B * S variant
becomes the shipped default (compressors/data/moos_default_top.safetensors).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import tempfile

import numpy as np

from compkit.errors import CompkitError
from compkit.files import dumps_json, write_text
from . import moos_default as md
from . import moos_labels, train_moos


_SPLIT_NUM = re.compile(r"(\d) ?([,.]) ?(\d)")


class CachedScorer:
    """Memoises a scorer by its input bytes: rates and outlier settings reuse one model pass."""

    def __init__(self, inner):
        self.inner, self.memo, self.seq_lens = inner, {}, getattr(inner, "seq_lens", None)

    def __call__(self, ids, mask):
        key = ids.tobytes() + mask.tobytes()
        if key not in self.memo:
            self.memo[key] = self.inner(ids, mask)
        return self.memo[key]


def compressor_for(model, tokenizer):
    from .moos import EagerScorer, MOOSCompressor, add_force_token_slots
    from .moos_scorer import TokenScorer

    model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
    add_force_token_slots(model, tokenizer)
    return MOOSCompressor(tokenizer, CachedScorer(EagerScorer(TokenScorer(model.eval()))), outlier="representation")


def setting(comp, outlier: str, weight: float, rarity):
    c = copy.copy(comp)
    c.outlier, c.outlier_weight, c.rarity_table = outlier, float(weight), rarity
    return c


def score_compression(questions, labelled, compressed) -> dict:
    tp = fp = fn = correct = total = 0
    nums, nums_kept, sol, sol_kept, kept_words = 0, 0, 0, 0, 0
    for q, lab, text in zip(questions, labelled, compressed):
        words, y = lab["words"], np.array(lab["labels"], dtype=bool)
        comp_words = moos_labels.split_words(_SPLIT_NUM.sub(r"\1\2\3", text), "offline")[0]
        pred = np.array(moos_labels.label_words(words, comp_words), dtype=bool)
        digit = np.array([any(c.isdigit() for c in w) for w in words], dtype=bool)
        tp += int((pred & y).sum()); fp += int((pred & ~y).sum()); fn += int((~pred & y).sum())
        correct += int((pred == y).sum()); total += len(y)
        nums += int(digit.sum()); nums_kept += int((pred & digit).sum())
        sol += int((y & ~digit).sum()); sol_kept += int((pred & y & ~digit).sum()); kept_words += int(pred.sum())
    return {"keep_f1": 2 * tp / max(2 * tp + fp + fn, 1), "accuracy": correct / max(total, 1),
            "numbers_kept": nums_kept / max(nums, 1), "solution_words_kept": sol_kept / max(sol, 1),
            "words_kept": kept_words / max(total, 1)}


def run(gsm8k: str, out_dir: str, *, train_samples: int, test_samples: int, epochs: int, betas, weights, rates,
        ship_beta: float | None, progress: bool = True) -> dict:
    from .moos import default_token_classifier
    from .rarity import RarityTable

    train_rows = md.read_gsm8k(os.path.join(gsm8k, "train.jsonl"), train_samples)
    test_rows = md.read_gsm8k(os.path.join(gsm8k, "test.jsonl"), test_samples)
    questions = [r["question"] for r in test_rows]
    test_labels = [md.gsm8k_labels(r["question"], r["answer"]) for r in test_rows]
    results = {"config": {"train_samples": len(train_rows), "test_samples": len(test_rows), "epochs": epochs,
                          "betas": list(betas), "outlier_weights": list(weights), "rates": list(rates),
                          "train_layers": md.TRAIN_LAYERS, "seed": 0}, "variants": {}}
    cache: dict = {}
    rarity = None
    with tempfile.TemporaryDirectory() as tmp:
        labels_path = os.path.join(tmp, "labels.jsonl")
        md.write_labels(train_rows, labels_path)
        variants = [("untrained", None)] + [("CE" if b == 0 else f"CE+{b:g}*S", b) for b in [0.0, *betas]]
        for name, beta in variants:
            model, tokenizer = default_token_classifier(0, trained=False)
            info = {"beta": beta}
            if beta is not None:
                m = md.train_variant(labels_path, os.path.join(tmp, name), beta=beta, epochs=epochs,
                                     model_and_tokenizer=(model, tokenizer), progress=progress, cache=cache)
                info["heldout_train_split"] = m["best"]
            split = train_moos.Split(model, md.TRAIN_LAYERS, cache)
            test_w = train_moos.encode(test_labels, tokenizer)
            info["test_pieces"] = train_moos.evaluate(split, test_w, 32, tokenizer.pad_token_id, "sample", "test")
            comp = compressor_for(model, tokenizer)
            if rarity is None:
                rarity = RarityTable.from_texts(comp.tokenizer, [r["question"] for r in train_rows],
                                                         source=f"GSM8K train, first {len(train_rows)} questions")
            settings = [("none", 0.0)] + [(k, w) for k in ("representation", "rarity") for w in weights]
            info["compression"] = {}
            for kind, w in settings:
                c = setting(comp, "representation" if kind == "none" else kind, w, rarity)
                for rate in rates:
                    out = c.compress_prompt(questions, rate=rate)["compressed_prompt_list"]
                    info["compression"][f"{kind}:{w:g}@{rate:g}"] = score_compression(questions, test_labels, out)
            results["variants"][name] = info
            if progress:
                print(f"{name}: test keep-F1 {info['test_pieces']['keep_f1']:.4f}  S {info['test_pieces']['S']:.4f}",
                      file=sys.stderr)
            if beta is not None:  # every trained variant's tensors, in the shipped form (any can become the default)
                meta = {"provenance": md.provenance(len(train_rows)), "beta": str(beta), "epochs": str(epochs),
                        "seed": "0", "heldout": {k: round(info["heldout_train_split"][k], 4)
                                                 for k in ("token_accuracy", "keep_f1", "S")}}
                os.makedirs(os.path.join(out_dir, "variants"), exist_ok=True)
                md.save_shipped(md.trained_state(model), os.path.join(out_dir, "variants", f"{name}.safetensors"), meta)
                if ship_beta is not None and beta == ship_beta:
                    md.save_shipped(md.trained_state(model), md.SHIPPED, meta)
                    results["shipped"] = name
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "ablation.json"), dumps_json(results).rstrip("\n"))  # as json.dump wrote it
    with open(os.path.join(out_dir, "ablation.md"), "w") as f:
        f.write(markdown(results))
    plot(results, os.path.join(out_dir, "ablation.png"))
    return results


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [f"GSM8K: {cfg['train_samples']} train questions to train, {cfg['test_samples']} test questions to "
             f"evaluate; top {cfg['train_layers']} layer + head, {cfg['epochs']} epochs, seed 0.", "",
             "| variant | test token acc | test keep-F1 | test S |", "|---|---|---|---|"]
    for name, v in results["variants"].items():
        t = v["test_pieces"]
        lines.append(f"| {name} | {t['token_accuracy']:.4f} | {t['keep_f1']:.4f} | {t['S']:.4f} |")
    lines += ["", "Compression (force_reserve_digit off): keep-F1 / accuracy of the kept words against the labels, "
              "share of the question's numbers and solution words kept.", "",
              "| variant | outlier | rate | keep-F1 | accuracy | numbers kept | solution words kept | words kept |",
              "|---|---|---|---|---|---|---|---|"]
    for name, v in results["variants"].items():
        for key, c in v["compression"].items():
            outlier, rate = key.split("@")
            lines.append(f"| {name} | {outlier} | {rate} | {c['keep_f1']:.4f} | {c['accuracy']:.4f} | "
                         f"{c['numbers_kept']:.4f} | {c['solution_words_kept']:.4f} | {c['words_kept']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = results["config"]["rates"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, v in results["variants"].items():
        sol = [v["compression"][f"none:0@{r:g}"]["solution_words_kept"] for r in rates]
        ax[0].plot(rates, sol, "o-", label=name)
        t = v["test_pieces"]
        ax[1].scatter(t["S"], t["keep_f1"], label=name)
    ax[0].set_xlabel("rate"), ax[0].set_ylabel("solution words kept (no outlier)")
    ax[1].set_xlabel("test S"), ax[1].set_ylabel("test keep-F1 (pieces)")
    for a in ax:
        a.grid(alpha=0.3), a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.moos_ablation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gsm8k", default=md.DEFAULT_GSM8K)
    ap.add_argument("--out-dir", default="ablation")
    ap.add_argument("--train-samples", type=int, default=1200)
    ap.add_argument("--test-samples", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--betas", default="0.5,2", help="CE + beta * S variants (CE alone always runs)")
    ap.add_argument("--weights", default="0.3,1", help="outlier weights, for both outlier kinds")
    ap.add_argument("--rates", default="0.25,0.33,0.5")
    ap.add_argument("--ship-beta", type=float, default=None, help="write this beta's model as the shipped default")
    args = ap.parse_args(argv)
    try:
        betas, weights, rates = floats(args.betas), floats(args.weights), floats(args.rates)
        if any(b < 0 for b in betas) or any(w < 0 for w in weights) or not all(0 < r <= 1 for r in rates):
            raise train_moos.TrainError("need --betas >= 0, --weights >= 0 and --rates in (0, 1]")
        if args.ship_beta is not None and args.ship_beta not in betas + [0.0]:
            raise train_moos.TrainError(f"--ship-beta {args.ship_beta} is not one of the trained betas {[0.0] + betas}")
        run(args.gsm8k, args.out_dir, train_samples=args.train_samples, test_samples=args.test_samples,
            epochs=args.epochs, betas=betas, weights=weights, rates=rates, ship_beta=args.ship_beta)
    except (CompkitError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}/ablation.json, ablation.md, ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
