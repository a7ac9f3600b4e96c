"""Train a MOOSComp token classifier the paper's way: cross-entropy + beta * S.

    python -m compressors.train_moos --train LABELS.jsonl --out DIR [--base CHECKPOINT|default]
        [--eval HELDOUT.jsonl] [--beta 0.5] [--cosine-form sample|batch] [--digit-weight 1] [--train-layers N]
        [--epochs 3] ...

LABELS.jsonl holds {"words", "labels"} lines (compressors.moos_labels writes them) or {"original",
"compressed"} pairs (labelled on the fly). The base is any 2-label BERT/XLM-R *ForTokenClassification folder
compkit loads (an LLMLingua-2 checkpoint, a user's) or "default" (MiniLM-L6 with a fresh head).

As LLMLingua-2's train_roberta.py: every piece of a word gets the word's label (the words are tokenized as
split words), windows are [CLS] + 510 pieces + [SEP] (longer samples are cut into several windows, where
train_roberta.py truncates), cross-entropy over the pieces. Where compkit differs on purpose: [CLS], [SEP]
and padding are ignored by the loss (train_roberta.py trains them as "discard", and its labels.insert(-1)
shifts the last word's label onto [SEP]); AdamW, not Adam; the best epoch is chosen by held-out keep-F1.

--digit-weight W (default 1 = plain CE) weighs the CE of pieces of words that hold a digit by W (a weighted
mean over the batch's pieces): W > 1 pushes numbers' keep probability up, so they survive low rates without
force_reserve_digit.

S (compressors.losses.inter_class_cosine_loss) is taken on final-layer hidden states:
- "sample": S of each window (its preserve x discard pairs), averaged over the windows that have both;
- "batch": every labelled piece of the batch pooled as one set, pairs across windows included.
With --train-layers N only the top N encoder layers and the head learn; the layers below are run once
over the data and cached (fast on CPU). The output folder is a Hugging Face checkpoint that
MOOSCompressor.from_pretrained and `export.build --moos-checkpoint` take unchanged, plus metrics.json,
training.json (what it learned from) and metrics.png. It is written to a temp folder and renamed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F

from compkit.errors import CompkitError
from compkit.files import atomic_path, dumps_json, write_text
from . import moos_labels

from .losses import inter_class_cosine_loss
from .moos_scorer import MASK_VALUE

IGNORE = -100


@dataclasses.dataclass
class TrainConfig:
    train: str
    out: str
    base: str = "default"
    eval: str | None = None
    eval_fraction: float = 0.1
    beta: float = 0.0
    cosine_form: str = "sample"
    digit_weight: float = 1.0  # CE weight of the pieces of words holding a digit (1 = plain CE)
    train_layers: int = 0  # 0 = every layer and the embeddings
    epochs: int = 3
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 16
    max_len: int = 512
    seed: int = 0
    threads: int = 2
    max_samples: int = 0  # 0 = all
    overwrite: bool = False
    provenance: str = ""  # what the data is, for training.json


class TrainError(CompkitError, ValueError):
    """Bad training input; one line that says what to fix."""


def check_config(cfg: TrainConfig) -> None:
    if cfg.beta < 0:
        raise TrainError(f"--beta must be >= 0 (0 is plain cross-entropy), not {cfg.beta}")
    if not cfg.digit_weight > 0:
        raise TrainError(f"--digit-weight must be > 0 (1 weighs number pieces as any other), not {cfg.digit_weight}")
    if cfg.cosine_form not in ("sample", "batch"):
        raise TrainError(f"--cosine-form must be 'sample' or 'batch', not {cfg.cosine_form!r}")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1, not {getattr(cfg, name)}")
    if cfg.train_layers < 0 or cfg.lr <= 0 or not 3 <= cfg.max_len <= 512 or not 0 < cfg.eval_fraction < 1:
        raise TrainError("need --train-layers >= 0, --lr > 0, 3 <= --max-len <= 512 and 0 < --eval-fraction < 1")
    if os.path.exists(cfg.out) and not cfg.overwrite:
        raise TrainError(f"output folder {cfg.out} exists: pass --overwrite to replace it, or choose another --out")


def load_base(base: str):
    """(model, tokenizer) to fine-tune; one-line CheckpointError for anything that is not a 2-label classifier."""
    from .moos import default_token_classifier, load_token_classifier

    if base == "default":
        return default_token_classifier(trained=False)
    return load_token_classifier(base)


# ------------------------------------------------------------------------------------------ data
def has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


def encode(samples: list[dict], tokenizer, max_len: int = 512) -> list[tuple[list[int], list[int], list[int]]]:
    """Word-labelled samples -> windows of (ids, piece labels, piece digit flags): [CLS] + up to max_len - 2
    pieces + [SEP]; a piece's digit flag is 1 when its word holds a digit (for --digit-weight)."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows, step = [], max_len - 2
    for s in samples:
        enc = tokenizer(s["words"], is_split_into_words=True, add_special_tokens=False)
        ids = enc["input_ids"]
        labels = [s["labels"][w] for w in enc.word_ids()]
        digit = [int(has_digit(s["words"][w])) for w in enc.word_ids()]
        for a in range(0, len(ids), step):
            windows.append(([cls_id] + ids[a : a + step] + [sep_id], [IGNORE] + labels[a : a + step] + [IGNORE],
                            [0] + digit[a : a + step] + [0]))
    return windows


def batches(windows, batch_size: int, pad_id: int, shuffle: bool, rng: random.Random | None = None):
    order = list(range(len(windows)))
    if shuffle:
        rng.shuffle(order)
    for a in range(0, len(order), batch_size):
        rows = [windows[i] for i in order[a : a + batch_size]]
        n = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        digit = torch.zeros((len(rows), n), dtype=torch.bool)
        for i, (x, y, d) in enumerate(rows):
            ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
            digit[i, : len(d)] = torch.tensor(d, dtype=torch.bool)
        yield [order[j] for j in range(a, min(a + batch_size, len(order)))], ids, mask, labels, digit


# ------------------------------------------------------------------------------------------ the model
class Split:
    """The model cut in two: a frozen bottom (embeddings + the first k layers, run once and cached) and a
    trainable top (the last layers + the head). The additive mask is MOOSComp's inference mask."""

    def __init__(self, model, train_layers: int, cache: dict | None = None):
        self.model, self.base = model, model.base_model
        layers = self.base.encoder.layer
        n = len(layers)
        self.k = 0 if train_layers in (0,) or train_layers >= n else n - train_layers
        self.full = train_layers == 0 or train_layers >= n
        for p in model.parameters():
            p.requires_grad_(self.full)
        if not self.full:
            for module in list(layers[self.k :]) + [model.classifier]:
                for p in module.parameters():
                    p.requires_grad_(True)
        # shareable between runs that start from the same frozen bottom on the same data (an ablation)
        self.cache: dict = {} if cache is None else cache

    def trainable(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self, on: bool):
        self.model.train(on)
        if not self.full:  # the frozen bottom runs as at inference (no dropout): that is what was cached
            self.base.embeddings.eval()
            for layer in self.base.encoder.layer[: self.k]:
                layer.eval()

    @staticmethod
    def additive(mask):
        return ((1.0 - mask.to(torch.float32)) * MASK_VALUE)[:, None, None, :]

    def bottom(self, ids, mask, keys=None):
        """Hidden states entering the trainable top; cached per window when the bottom is frozen."""
        if keys is not None and all(k in self.cache for k in keys):
            n = ids.shape[1]
            return torch.stack([F.pad(self.cache[k], (0, 0, 0, n - len(self.cache[k]))) for k in keys])
        with torch.set_grad_enabled(self.full and self.model.training):
            h = self.base.embeddings(input_ids=ids)
            for layer in self.base.encoder.layer[: self.k]:
                h = layer(h, self.additive(mask))
        if keys is not None and not self.full:
            for row, k in enumerate(keys):
                self.cache[k] = h[row, : int(mask[row].sum())].detach()
        return h

    def top(self, h, mask):
        for layer in self.base.encoder.layer[self.k :]:
            h = layer(h, self.additive(mask))
        dropout = getattr(self.model, "dropout", None)
        logits = self.model.classifier(dropout(h) if dropout is not None else h)
        return logits, h


def piece_loss(logits, labels, digit, digit_weight: float = 1.0):
    """Cross-entropy over the labelled pieces; pieces of digit words weigh `digit_weight` (a weighted mean,
    so 1.0 is exactly the plain mean)."""
    valid = labels != IGNORE
    ce = F.cross_entropy(logits[valid], labels[valid], reduction="none")
    if digit_weight == 1.0:
        return ce.mean()
    w = torch.where(digit[valid], torch.tensor(float(digit_weight)), torch.tensor(1.0))
    return (w * ce).sum() / w.sum()


def cosine_term(hidden, labels, form: str):
    if form == "batch":
        valid = labels != IGNORE
        return inter_class_cosine_loss(hidden[valid], labels[valid])
    values = [inter_class_cosine_loss(h, y) for h, y in zip(hidden, labels) if (y == 1).any() and (y == 0).any()]
    return torch.stack(values).mean() if values else hidden.sum() * 0.0


@torch.no_grad()
def evaluate(split: Split, windows, batch_size: int, pad_id: int, form: str = "sample", cache_prefix=None) -> dict:
    """Token accuracy, keep-F1 (keep = the positive class), CE and S on held-out windows."""
    split.train(False)
    tp = fp = fn = correct = total = 0
    ce_sum, s_values = 0.0, []
    for keys, ids, mask, labels, _ in batches(windows, batch_size, pad_id, shuffle=False):
        keys = None if cache_prefix is None else [(cache_prefix, k) for k in keys]
        logits, hidden = split.top(split.bottom(ids, mask, keys), mask)
        valid = labels != IGNORE
        pred, y = logits.argmax(-1)[valid], labels[valid]
        tp += int(((pred == 1) & (y == 1)).sum()); fp += int(((pred == 1) & (y == 0)).sum())
        fn += int(((pred == 0) & (y == 1)).sum()); correct += int((pred == y).sum()); total += int(valid.sum())
        ce_sum += float(F.cross_entropy(logits[valid], y, reduction="sum"))
        s_values.append(float(cosine_term(hidden, labels, form)))
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"token_accuracy": correct / max(total, 1), "keep_f1": f1, "ce": ce_sum / max(total, 1),
            "S": float(np.mean(s_values)) if s_values else 0.0, "pieces": total,
            "keep_fraction": (tp + fn) / max(total, 1)}


# ------------------------------------------------------------------------------------------ training
def read_samples(cfg: TrainConfig):
    train = moos_labels.read_labelled(cfg.train)
    rng = random.Random(cfg.seed)
    if cfg.eval:
        heldout = moos_labels.read_labelled(cfg.eval)
    else:
        if len(train) < 2:
            raise TrainError(f"{cfg.train}: {len(train)} sample; need at least 2 to hold one out, or pass --eval")
        rng.shuffle(train)
        n_eval = max(1, int(round(len(train) * cfg.eval_fraction)))
        heldout, train = train[:n_eval], train[n_eval:]
    if cfg.max_samples:
        train = train[: cfg.max_samples]
    return train, heldout


def train(cfg: TrainConfig, *, model_and_tokenizer=None, progress: bool = True, cache: dict | None = None) -> dict:
    """Train, then write cfg.out (temp folder + rename). Returns the metrics. `cache` (a dict) keeps the frozen
    bottom's outputs for the next run on the same data and base."""
    from tqdm import tqdm

    check_config(cfg)
    train_samples, heldout = read_samples(cfg)
    model, tokenizer = model_and_tokenizer or load_base(cfg.base)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        train_w, eval_w = encode(train_samples, tokenizer, cfg.max_len), encode(heldout, tokenizer, cfg.max_len)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        split = Split(model, cfg.train_layers, cache)
        opt = torch.optim.AdamW(split.trainable(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        history = [{"epoch": 0, "train_loss": None, **evaluate(split, eval_w, cfg.batch_size, pad_id, cfg.cosine_form, "eval")}]
        best, best_state = history[0], None
        for epoch in range(1, cfg.epochs + 1):
            split.train(True)
            losses = []
            bar = tqdm(list(batches(train_w, cfg.batch_size, pad_id, True, rng)), desc=f"epoch {epoch}/{cfg.epochs}",
                       disable=not progress, leave=False)
            for keys, ids, mask, labels, digit in bar:
                logits, hidden = split.top(split.bottom(ids, mask, [("train", k) for k in keys]), mask)
                loss = piece_loss(logits, labels, digit, cfg.digit_weight)
                if cfg.beta > 0:
                    loss = loss + cfg.beta * cosine_term(hidden, labels, cfg.cosine_form)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(split.trainable(), 10.0)  # train_roberta.py's MAX_GRAD_NORM
                opt.step()
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                   **evaluate(split, eval_w, cfg.batch_size, pad_id, cfg.cosine_form, "eval")}
            history.append(row)
            if progress:
                print(f"epoch {epoch}: loss {row['train_loss']:.4f}  held-out acc {row['token_accuracy']:.4f}  "
                      f"keep-F1 {row['keep_f1']:.4f}  S {row['S']:.4f}", file=sys.stderr)
            if best_state is None or row["keep_f1"] > best["keep_f1"]:
                best, best_state = row, {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
    finally:
        torch.set_num_threads(old_threads)
    metrics = {"best_epoch": best["epoch"], "best": best, "history": history,
               "train_samples": len(train_samples), "heldout_samples": len(heldout),
               "train_windows": len(train_w), "heldout_windows": len(eval_w)}
    save(cfg, model.eval(), tokenizer, metrics)
    return metrics


def plot(history: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].plot(ep[1:], [h["train_loss"] for h in history[1:]], "o-", label="train loss")
    ax[0].plot(ep, [h["ce"] for h in history], "s-", label="held-out CE")
    ax[1].plot(ep, [h["token_accuracy"] for h in history], "o-", label="held-out token accuracy")
    ax[1].plot(ep, [h["keep_f1"] for h in history], "s-", label="held-out keep-F1")
    ax[1].plot(ep, [h["S"] for h in history], "^-", label="held-out S")
    for a in ax:
        a.set_xlabel("epoch"), a.legend(fontsize=8), a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(cfg: TrainConfig, model, tokenizer, metrics: dict) -> None:
    out = os.path.abspath(cfg.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    with atomic_path(out, directory=True) as tmp:  # --overwrite: the old folder is replaced whole
        os.mkdir(tmp)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"provenance": cfg.provenance or f"trained by compkit train_moos on {cfg.train}",
                "config": dataclasses.asdict(cfg)}
        for name, obj in (("training.json", info), ("metrics.json", metrics)):  # as json.dump wrote them: no final newline
            write_text(os.path.join(tmp, name), dumps_json(obj).rstrip("\n"))
        plot(metrics["history"], os.path.join(tmp, "metrics.png"))


def parse_args(argv=None) -> TrainConfig:
    ap = argparse.ArgumentParser(prog="python -m compressors.train_moos", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            ap.add_argument(flag, action="store_true")
        elif f.default is dataclasses.MISSING:
            ap.add_argument(flag, required=True)
        else:
            kind = {"float": float, "int": int}.get(str(f.type), str)
            ap.add_argument(flag, type=kind, default=f.default)
    return TrainConfig(**vars(ap.parse_args(argv)))


def main(argv=None) -> int:
    try:
        cfg = parse_args(argv)
        metrics = train(cfg)
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b = metrics["best"]
    print(f"wrote {cfg.out}: best epoch {b['epoch']}, held-out token accuracy {b['token_accuracy']:.4f}, "
          f"keep-F1 {b['keep_f1']:.4f}, S {b['S']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
