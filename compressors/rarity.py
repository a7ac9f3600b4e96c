"""Rarity outliers: how surprising each token piece is, from piece counts over a user's own corpus.

    python -m compressors.rarity build CHECKPOINT_DIR CORPUS [CORPUS ...] [--out PATH]

counts every piece of the checkpoint's tokenizer over the corpus files (plain text, or JSON lines whose
string fields are read) and stores the table beside the checkpoint (rarity_table.npz), where
MOOSCompressor.from_pretrained finds it. At compression time a piece's self-information
-log((count + 1) / (total + vocab)) is z-scored within its window, over the window's non-special pieces.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from compkit.errors import CompkitError
from compkit.files import atomic_path


class RarityTable:
    FILENAME = "rarity_table.npz"

    def __init__(self, counts: np.ndarray, source: str = ""):
        self.counts = np.asarray(counts, dtype=np.int64)
        self.source = source
        total, vocab = float(self.counts.sum()), len(self.counts)
        self.self_info = -np.log((self.counts + 1.0) / (total + vocab)).astype(np.float32)
        self.unseen = np.float32(-np.log(1.0 / (total + vocab)))

    @classmethod
    def from_texts(cls, tokenizer, texts, source: str = "") -> "RarityTable":
        counts = np.zeros(len(tokenizer), dtype=np.int64)
        batch = []
        for text in texts:
            batch.append(text)
            if len(batch) == 256:
                cls._count(tokenizer, batch, counts)
                batch = []
        cls._count(tokenizer, batch, counts)
        return cls(counts, source)

    @staticmethod
    def _count(tokenizer, texts, counts):
        if texts:
            for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
                np.add.at(counts, np.asarray(ids, dtype=np.int64), 1)

    def save(self, path) -> None:
        with atomic_path(os.fspath(path)) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no .npz
            np.savez_compressed(f, counts=self.counts, source=np.asarray(self.source))

    @classmethod
    def load(cls, path) -> "RarityTable":
        try:
            with np.load(path) as data:
                return cls(data["counts"], str(data["source"]))
        except Exception as e:
            raise ValueError(f"cannot read rarity table {path}: {type(e).__name__}: {e}; rebuild it with "
                             "`python -m compressors.rarity build`") from None

    def window_z(self, ids: np.ndarray, special_ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        # ids past the table are tokens added after it was built ([NEWi] force-token slots): never seen
        info = np.where(ids < len(self.counts), self.self_info[np.minimum(ids, len(self.counts) - 1)], self.unseen)
        real = ~np.isin(ids, np.asarray(list(special_ids), dtype=np.int64))
        z = np.zeros(len(ids), dtype=np.float32)
        if real.sum() > 1:
            vals = info[real]
            z[real] = (vals - vals.mean()) / (vals.std() + 1e-6)
        return z


def read_corpus(paths):
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"corpus file not found: {path}")
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                if path.endswith(".jsonl"):
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        raise ValueError(f"{path}: a line is not JSON; pass .jsonl files of objects or plain text") from None
                    yield from (v for v in row.values() if isinstance(v, str)) if isinstance(row, dict) else ()
                else:
                    yield line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compressors.rarity", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="count token pieces of a corpus with a checkpoint's tokenizer")
    b.add_argument("checkpoint")
    b.add_argument("corpus", nargs="+")
    b.add_argument("--out", help=f"default: CHECKPOINT/{RarityTable.FILENAME}")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    try:
        if not os.path.isdir(args.checkpoint):
            raise ValueError(f"checkpoint directory not found: {args.checkpoint}")
        tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
        table = RarityTable.from_texts(tokenizer, read_corpus(args.corpus), source=",".join(args.corpus))
        if table.counts.sum() == 0:
            raise ValueError("the corpus holds no text; pass files with the kind of prompts you will compress")
        out = args.out or os.path.join(args.checkpoint, RarityTable.FILENAME)
        table.save(out)
    except (CompkitError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {int(table.counts.sum())} pieces counted, {int((table.counts > 0).sum())} distinct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
