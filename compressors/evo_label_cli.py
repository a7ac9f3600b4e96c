"""`python -m compressors.evo_label`: search EvoComp labels for a data set against a LLaVA checkpoint.

    python -m compressors.evo_label --mllm DIR --data easy-vqa:train --limit 300 --out labels.jsonl

--data is `easy-vqa:train` / `easy-vqa:test` (the PyPI package), `easy-vqa-mosaic:train` / `:test` (its 2 x 2
mosaics, compressors/easyvqa_mosaic.py) or a JSONL file of
{"image": path (relative to the file's folder), "question": ..., "answer": ...}. The prompt is
`--prompt` with {question} filled in; the tokenizer's image token is expanded to the model's number of
visual tokens (as LLaVA's processor does), BOS is prepended when the tokenizer does not add it, and the
answer is tokenized after the prompt. Images go through the checkpoint's own image processor.

The label file is JSONL: a header line (model fingerprint + search configuration), then one line per
finished sample, appended with one write and fsync; a rerun skips the samples already there, a torn
last line is dropped, and a file from another model or configuration is refused.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from compkit.errors import CompkitError
from compkit.files import dumps_json, write_json
from compressors.evo_label import LlavaAdapter, evolve_mask, semantic_groups

FORMAT = "evocomp-labels/1"


class LabelError(CompkitError):
    """A one-line, user-facing error: the CLI prints it and exits 2."""


def model_fingerprint(directory):
    """sha256 of config.json and, per weight file, its size and first/last MiB (cheap even for 7B)."""
    d = Path(directory)
    h = hashlib.sha256((d / "config.json").read_bytes())
    for f in sorted(d.glob("*.safetensors")) + sorted(d.glob("*.bin")):
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def load_llava(directory):
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration
    d = Path(directory)
    if not (d / "config.json").is_file():
        raise LabelError(f"--mllm {d}: no config.json there; pass a LlavaForConditionalGeneration checkpoint folder")
    try:
        config = AutoConfig.from_pretrained(d)
    except (ValueError, OSError, KeyError) as e:
        raise LabelError(f"--mllm {d}: unreadable config.json ({str(e).splitlines()[0]})") from None
    if not isinstance(config, LlavaConfig):
        raise LabelError(f"--mllm {d} is a {type(config).__name__} model, not LLaVA: EvoComp labels need a LlavaForConditionalGeneration checkpoint")
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # stderr stays the one-line error channel
    model = LlavaForConditionalGeneration.from_pretrained(d, attn_implementation="eager").eval()
    try:
        processor = AutoImageProcessor.from_pretrained(d)
    except (OSError, ValueError):
        raise LabelError(f"--mllm {d} has no image processor (preprocessor_config.json): save the checkpoint's processor with it") from None
    return model, AutoTokenizer.from_pretrained(d), processor


def read_data(spec, limit=None, subset_seed=None):
    """[(image path, question, answer)] from easy-vqa:SPLIT or a JSONL file; one-line errors.
    subset_seed: a seeded shuffle before `limit` (a larger limit later extends the same subset)."""
    name, _, split = spec.partition(":")
    from compressors.easyvqa_data import DATA_SETS, data_split
    if name in DATA_SETS and split:
        try:
            items = data_split(name, split)
        except ValueError as e:
            raise LabelError(f"--data {spec}: {e}") from None
    else:
        path = Path(spec)
        if not path.is_file():
            raise LabelError(f"--data {spec}: no such file (pass a JSONL file, easy-vqa:train / easy-vqa:test or "
                             "easy-vqa-mosaic:train / easy-vqa-mosaic:test)")
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                img = row["image"]
                items.append((str(img if os.path.isabs(img) else path.parent / img), str(row["question"]), str(row["answer"])))
            except (ValueError, KeyError, TypeError) as e:
                raise LabelError(f"--data {spec} line {n} is not a JSON object with image / question / answer ({type(e).__name__}: {e})") from None
    if subset_seed is not None:
        items = [items[i] for i in torch.randperm(len(items), generator=torch.Generator().manual_seed(subset_seed))]
    if limit is not None:
        items = items[:limit]
    if not items:
        raise LabelError(f"--data {spec} holds no samples")
    return items


def encode(tok, prompt, question, answer, n_visual, image_token_id):
    """(input_ids [L] with the image run expanded, labels [L] set on the answer tokens only)."""
    ids = tok(prompt.format(question=question), add_special_tokens=True)["input_ids"]
    if tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
        ids = [tok.bos_token_id] + ids
    if ids.count(image_token_id) != 1:
        raise LabelError(f"--prompt must contain the image token exactly once (id {image_token_id}, '{tok.convert_ids_to_tokens(image_token_id)}'), got {ids.count(image_token_id)}")
    at = ids.index(image_token_id)
    ids = ids[:at] + [image_token_id] * n_visual + ids[at + 1:]
    ans = tok(" " + answer, add_special_tokens=False)["input_ids"]
    if not ans:
        raise LabelError(f"answer {answer!r} tokenizes to nothing")
    full = torch.tensor(ids + ans)
    labels = torch.full_like(full, -100)
    labels[len(ids):] = full[len(ids):]
    return full, labels


def pixel_values(processor, path):
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return processor(images=im.convert("RGB"), return_tensors="pt")["pixel_values"]
    except (OSError, UnidentifiedImageError) as e:
        raise LabelError(f"unreadable image {path}: {str(e).splitlines()[0]}") from None


def open_labels(out, header):
    """Done sample indices of an existing label file (refusing a foreign one), or a fresh file."""
    out = Path(out)
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(out), header, indent=None)
        return set()
    lines = out.read_bytes().split(b"\n")
    try:
        old = json.loads(lines[0])
    except ValueError:
        raise LabelError(f"--out {out} exists and is not an EvoComp label file: pass another --out") from None
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        raise LabelError(f"--out {out} exists and is not an EvoComp label file: pass another --out")
    if old.get("model") != header["model"]:
        raise LabelError(f"--out {out} holds labels for another model ({old.get('model')} != {header['model']}): pass another --out")
    if old.get("config") != header["config"]:
        diff = sorted(k for k in set(old.get("config", {})) | set(header["config"]) if old.get("config", {}).get(k) != header["config"].get(k))
        raise LabelError(f"--out {out} was made with another configuration (differs in {', '.join(diff)}): rerun with the same options or pass another --out")
    done, keep = set(), len(lines[0]) + 1
    for line in lines[1:]:
        try:
            done.add(int(json.loads(line)["index"]))
            keep += len(line) + 1
        except (ValueError, KeyError, TypeError):
            break  # a torn last write: cut it off, that sample is redone
    if keep < out.stat().st_size:
        os.truncate(out, keep)
    return done


def append_line(out, row):
    data = dumps_json(row, indent=None).encode()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data)  # one write of the whole line
        os.fsync(fd)
    finally:
        os.close(fd)


def label_sample(adapter, vocab, px, ids, labels, search, seed, n_random=8):
    t0 = time.time()
    visual = adapter.visual_tokens(px)
    if visual.shape[1] != vocab.shape[1]:
        raise LabelError(f"visual tokens are {visual.shape[1]} wide but the LLM's embeddings {vocab.shape[1]}: the projector does not match the LLM")
    groups = semantic_groups(visual, vocab)
    loss_fn = adapter.loss_fn(px, ids, labels)
    calls = []
    mask, loss = evolve_mask(lambda m: calls.append(len(m)) or loss_fn(m), groups, seed=seed, **search)
    seconds = time.time() - t0
    n, k = len(groups), int(mask.sum())
    g = torch.Generator().manual_seed(seed + 1)
    rand = torch.zeros(n_random, n, dtype=torch.bool)
    for r in range(n_random):
        rand[r, torch.randperm(n, generator=g)[:k]] = True
    rand_loss = loss_fn(rand)
    all_loss = loss_fn(torch.ones(1, n, dtype=torch.bool))
    return {"mask": mask.int().tolist(), "groups": groups.tolist(), "kept": k, "loss": loss,
            "all_tokens_loss": float(all_loss[0]), "random_loss": rand_loss.tolist(),
            "forwards": sum(calls), "seconds": round(seconds, 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m compressors.evo_label", description="Search EvoComp labels against a LLaVA checkpoint's own loss.")
    ap.add_argument("--mllm", required=True, help="LlavaForConditionalGeneration checkpoint folder (with tokenizer and image processor)")
    ap.add_argument("--data", required=True, help="easy-vqa:train, easy-vqa:test, easy-vqa-mosaic:train|test, or a JSONL of image/question/answer")
    ap.add_argument("--out", required=True, help="label file (JSONL); an existing one is resumed")
    ap.add_argument("--limit", type=int, help="first N samples only")
    ap.add_argument("--subset-seed", type=int, help="shuffle the data set with this seed before --limit")
    ap.add_argument("--prompt", default="<image> {question}", help="prompt template with the tokenizer's image token and {question}")
    ap.add_argument("--prune-layer", type=int, default=0, help="0: drop tokens before the LLM; l: after LLM layer l")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=48)
    ap.add_argument("--parents", type=int, default=12)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--crossover", type=float, default=0.9)
    ap.add_argument("--mutation", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args):
    from tqdm import tqdm
    items = read_data(args.data, args.limit, args.subset_seed)
    model, tok, processor = load_llava(args.mllm)
    search = {k: getattr(args, k) for k in ("population", "parents", "generations", "crossover", "mutation")}
    config = {**search, "seed": args.seed, "prune_layer": args.prune_layer, "prompt": args.prompt, "data": args.data,
              "subset_seed": args.subset_seed}
    try:
        adapter = LlavaAdapter(model, prune_layer=args.prune_layer)
    except (TypeError, ValueError) as e:
        raise LabelError(str(e)) from None
    # everything that can fail on the inputs fails here, before anything is written
    pixels = {p: pixel_values(processor, p) for p in sorted({p for p, _, _ in items})}
    n = adapter.visual_tokens(pixels[items[0][0]]).shape[0]
    encoded = [encode(tok, args.prompt, q, a, n, model.config.image_token_id) for _, q, a in items]
    done = open_labels(args.out, {"format": FORMAT, "model": model_fingerprint(args.mllm), "config": config})
    vocab = adapter.vocab.detach()
    todo = [i for i in range(len(items)) if i not in done]
    for i in tqdm(todo, desc="EvoComp labels", initial=len(items) - len(todo), total=len(items)):
        path, question, answer = items[i]
        row = label_sample(adapter, vocab, pixels[path], *encoded[i], search, args.seed + i)
        append_line(args.out, {"index": i, "image": path, "question": question, "answer": answer, **row})
    print(f"{len(items)} samples labelled in {args.out} ({len(todo)} new)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
