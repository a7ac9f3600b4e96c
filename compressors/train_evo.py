"""`python -m compressors.train_evo`: train an EvoCompressor on evolutionary labels, the paper's way.

    python -m compressors.train_evo --mllm DIR --labels labels.jsonl --out CKPT [--variant paper|compact]

Loss: GHM-C + alpha * L_CS (L_CS: mean cosine over each sample's (discarded, retained) pairs of the
compressor's final visual hidden states; --cosine-reduction pooled pools the batch instead). --loss ce
trains plain BCE; --alpha 0 drops L_CS; --random-labels replaces every label by a random
one-token-per-group mask of the same grouping; --no-text masks the question out (the ablations of
the paper). --rank-weight W (off by default, NOT the paper's method) adds W x a listwise term: the
cross-entropy between softmax(keep logits) over the visual tokens and softmax(-single-token answer
loss / T), each visual token's answer loss when the MLLM sees it alone, so the top of the ranking
learns which token answers (docs/EVOCOMP.md, "Ranked labels"). The compressor reads the MLLM's
projected visual tokens and the LLM's input embeddings of the question. AdamW; a held-out tenth of
the label file (whole images) validates each epoch; the best epoch by validation top-k precision (the
share of the k best-scored tokens the label keeps, k = the label's size; or --select top1_regret) is
saved with EvoCompressor.save, so `export.build --evo-checkpoint CKPT` takes it.
Writes CKPT/train_metrics.json and CKPT/train_curves.png.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from compkit.errors import CompkitError
from compkit.files import write_json
from compressors.evo import EvoCompConfig, EvoCompressor
from compressors.evo_label_cli import FORMAT, LabelError, encode, load_llava, model_fingerprint, pixel_values
from compressors.losses import cosine_separation_loss, ghm_loss

ALPHA = 0.5  # the paper's alpha is not public: compkit's choice (docs/EVOCOMP.md)


def compressor_config(variant, width, n_visual, grid, max_text=16):
    """The paper's design exactly (EvoCompConfig.for_variant("paper"): one layer on the MLLM's width, no input
    projection, 64-wide heads, FFN 4x), or a compact 2 x min(256, width) design (4 heads, FFN 4x)."""
    if variant not in ("paper", "compact"):
        raise ValueError(f"variant must be 'paper' or 'compact', got {variant!r}")
    sizes = dict(visual_dim=width, text_dim=width, max_visual_tokens=n_visual, max_text_tokens=max_text, grid=tuple(grid))
    if variant == "paper":
        return EvoCompConfig.for_variant("paper", **sizes)
    # not EVO_VARIANTS["compact"] (2 x 256, projected): capped at the MLLM's width so a small MLLM gets a small one
    hidden = min(256, width)
    return EvoCompConfig(hidden=hidden, layers=2, heads=4, ffn=4 * hidden, **sizes)


def read_labels(path, mllm_dir):
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"--labels {path}: no such file (make one with python -m compressors.evo_label)")
    lines = path.read_text().splitlines()
    try:
        header, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    except (ValueError, IndexError):
        raise LabelError(f"--labels {path} is not an EvoComp label file") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LabelError(f"--labels {path} is not an EvoComp label file")
    if header["model"] != model_fingerprint(mllm_dir):
        raise LabelError(f"--labels {path} were searched against another model than --mllm {mllm_dir}: label it with this model")
    if not rows:
        raise LabelError(f"--labels {path} holds no labelled samples")
    return header, rows


@torch.no_grad()
def features(adapter, tok, processor, items, max_text):
    """Per sample: (visual tokens [N, D], question embeddings [T, D]) as the compressor sees them."""
    embed = adapter.model.get_input_embeddings()
    out, cache = [], {}
    for path, question, _ in items:
        if path not in cache:
            cache[path] = adapter.visual_tokens(pixel_values(processor, path))
        q = tok(question, add_special_tokens=False)["input_ids"][:max_text] or [tok.unk_token_id]
        out.append((cache[path], embed(torch.tensor(q))))
    return out


@torch.no_grad()
def single_token_losses(adapter, tok, feats, rows, prompt):
    """[S, N]: each labelled sample's answer loss when the LLM sees only visual token i (as the label search
    scores masks: the checkpoint's own prompt and pruning before the LLM): N one-token masks per sample, on the
    visual tokens `features` already computed."""
    out = []
    for (visual, _), r in zip(feats, rows):
        n = visual.shape[0]
        ids, labels = encode(tok, prompt, r["question"], r["answer"], n, adapter.cfg.image_token_id)
        out.append(adapter.answer_loss(visual, ids, labels, torch.eye(n, dtype=torch.bool)))
    return torch.stack(out)


def rank_loss(logits, single, temperature):
    """Listwise cross-entropy: softmax(-single / T) over the visual tokens as the target of softmax(logits)."""
    target = torch.softmax(-single / temperature, dim=-1)
    return -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


def top1_regret(logits, single):
    """How much worse the top-scored token alone answers than the best single token (mean answer loss)."""
    picked = single[torch.arange(len(single)), logits.argmax(-1)]
    return float((picked - single.min(-1).values).mean())


def batch(feats, idx, max_text, use_text=True):
    v = torch.stack([feats[i][0] for i in idx])
    t = torch.zeros(len(idx), max_text, v.shape[-1])
    m = torch.zeros(len(idx), max_text)
    for r, i in enumerate(idx):
        e = feats[i][1]
        t[r, :len(e)], m[r, :len(e)] = e, 1.0 if use_text else 0.0
    return v, t, m


def random_group_labels(rows, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for r in rows:
        groups, mask = torch.tensor(r["groups"]), torch.zeros(len(r["groups"]), dtype=torch.bool)
        for gid in groups.unique():
            mem = torch.nonzero(groups == gid).flatten()
            mask[mem[torch.randint(len(mem), (1,), generator=g)]] = True
        out.append(mask)
    return out


def topk_precision(logits, target):
    hits = []
    for s, y in zip(logits, target):
        k = int(y.sum())
        hits.append(float(y[torch.topk(s, k).indices].float().mean()) if k else 1.0)
    return float(np.mean(hits))


def run_epoch(model, feats, targets, idx, args, opt=None, ghm_state=None, single=None):
    grads = opt is not None
    model.train(grads)
    hidden = {}
    hook = model.head.register_forward_pre_hook(lambda mod, inp: hidden.__setitem__("h", inp[0]))
    losses, logits_all = [], []
    try:
        for s in range(0, len(idx), args.batch):
            chunk = idx[s:s + args.batch]
            v, t, m = batch(feats, chunk, model.config.max_text_tokens, use_text=not args.no_text)
            y = torch.stack([targets[i] for i in chunk]).float()
            with torch.set_grad_enabled(grads):
                logits = model(v, t, m)
                if args.loss == "ghm":
                    loss, new_state = ghm_loss(logits, y, state=ghm_state)
                    if grads:
                        ghm_state = new_state
                else:
                    loss = F.binary_cross_entropy_with_logits(logits, y)
                if args.alpha:
                    loss = loss + args.alpha * cosine_separation_loss(hidden["h"], y.bool(), reduction=args.cosine_reduction)
                if args.rank_weight:
                    loss = loss + args.rank_weight * rank_loss(logits, single[chunk], args.rank_temperature)
            if grads:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()) * len(chunk))
            logits_all.append(logits.detach())
    finally:
        hook.remove()
    logits = torch.cat(logits_all)
    y = torch.stack([targets[i] for i in idx])
    m = {"loss": sum(losses) / len(idx), "acc": float(((logits > 0) == y).float().mean()),
         "topk_precision": topk_precision(logits, y)}
    if single is not None:
        m["top1_regret"] = top1_regret(logits, single[idx])
    return m, ghm_state


def better(m, best, select):
    """Whether validation metrics m beat the best so far: the higher top-k precision, or the lower top-1 regret."""
    return m["top1_regret"] < best["top1_regret"] if select == "top1_regret" else m["topk_precision"] > best["topk_precision"]


def plot(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["train"]["loss"] for h in history], label="train")
    a.plot(ep, [h["val"]["loss"] for h in history], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend()
    b.plot(ep, [h["val"]["acc"] for h in history], label="val token accuracy")
    b.plot(ep, [h["val"]["topk_precision"] for h in history], label="val top-k precision")
    b.set_xlabel("epoch"), b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(args, log=print):
    torch.manual_seed(args.seed)
    if args.rank_weight < 0 or args.rank_temperature <= 0:
        raise LabelError(f"--rank-weight must be >= 0 and --rank-temperature > 0, got {args.rank_weight} and {args.rank_temperature}")
    if args.select == "top1_regret" and not args.rank_weight:
        raise LabelError("--select top1_regret needs the single-token losses of --rank-weight > 0")
    header, rows = read_labels(args.labels, args.mllm)
    model_llm, tok, processor = load_llava(args.mllm)
    from compressors.evo_label import LlavaAdapter
    adapter = LlavaAdapter(model_llm)
    items = [(r["image"], r["question"], r["answer"]) for r in rows]
    feats = features(adapter, tok, processor, items, args.max_text)
    n, width = feats[0][0].shape
    if any(len(r["mask"]) != n for r in rows):
        raise LabelError(f"--labels masks do not have the MLLM's {n} visual tokens: labels for another model")
    side = int(round(n ** 0.5))
    cfg = compressor_config(args.variant, width, n, (side, n // side), args.max_text)
    targets = random_group_labels(rows, args.seed) if args.random_labels else [torch.tensor(r["mask"]).bool() for r in rows]
    single = single_token_losses(adapter, tok, feats, rows, header["config"]["prompt"]) if args.rank_weight else None
    images = sorted({r["image"] for r in rows})
    rng = np.random.default_rng(args.seed)
    val_images = set(rng.permutation(images)[:max(1, len(images) // 10)].tolist())
    val = [i for i, r in enumerate(rows) if r["image"] in val_images]
    tr = [i for i, r in enumerate(rows) if r["image"] not in val_images]
    what = "random one-per-group labels" if args.random_labels else "evolutionary labels"
    data = header["config"]["data"]
    data = {"easy-vqa:train": "easy-VQA TRAIN questions (PyPI easy-vqa 1.0)",
            "easy-vqa-mosaic:train": "easy-VQA TRAIN questions on 2 x 2 mosaics of TRAIN images (PyPI easy-vqa 1.0)"}.get(data, data)
    rank = f" + {args.rank_weight:g} rank (single-token losses, T {args.rank_temperature:g})" if args.rank_weight else ""
    prov = (f"EvoComp ({args.variant}) trained on {len(tr)} {what} of {data} searched against the LLaVA "
            f"checkpoint {Path(args.mllm).name} (fingerprint {header['model']}) ({args.loss}{' + %g cosine' % args.alpha if args.alpha else ''}"
            f"{rank}{', no text' if args.no_text else ''}, seed {args.seed})")
    model = EvoCompressor(cfg, provenance=prov)
    model.init_weights(torch.Generator().manual_seed(args.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    history, best, state = [], None, None
    for epoch in range(1, args.epochs + 1):
        order = [tr[i] for i in rng.permutation(len(tr))]
        train_m, state = run_epoch(model, feats, targets, order, args, opt, state, single)
        val_m, _ = run_epoch(model, feats, targets, val, args, single=single)
        history.append({"epoch": epoch, "train": train_m, "val": val_m})
        log(f"epoch {epoch}: train loss {train_m['loss']:.4f}, val loss {val_m['loss']:.4f}, val top-k precision {val_m['topk_precision']:.3f}")
        if best is None or better(val_m, best["val"], args.select):
            best = history[-1]
            model.eval().save(args.out)
    out = Path(args.out)
    metrics = {"variant": args.variant, "loss": args.loss, "alpha": args.alpha, "cosine_reduction": args.cosine_reduction,
               "select": args.select, "rank_weight": args.rank_weight, "rank_temperature": args.rank_temperature,
               "random_labels": args.random_labels, "text": not args.no_text, "train_samples": len(tr), "val_samples": len(val),
               "best_epoch": best["epoch"], "best": best, "history": history, "provenance": prov}
    write_json(str(out / "train_metrics.json"), metrics)
    plot(history, out / "train_curves.png")
    return metrics


def parser():
    ap = argparse.ArgumentParser(prog="python -m compressors.train_evo", description="Train EvoComp on evolutionary labels (GHM-C + alpha * L_CS).")
    ap.add_argument("--mllm", required=True, help="the LLaVA checkpoint the labels were searched against")
    ap.add_argument("--labels", required=True, help="label file of python -m compressors.evo_label")
    ap.add_argument("--out", required=True, help="checkpoint folder (EvoCompressor.save)")
    ap.add_argument("--variant", choices=["paper", "compact"], default="paper")
    ap.add_argument("--loss", choices=["ghm", "ce"], default="ghm")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="weight of L_CS (0: none)")
    ap.add_argument("--cosine-reduction", choices=["sample", "pooled"], default="sample")
    ap.add_argument("--random-labels", action="store_true")
    ap.add_argument("--no-text", action="store_true")
    ap.add_argument("--rank-weight", type=float, default=0.0,
                    help="weight of the listwise single-token term (0: the paper's loss; not the paper's method)")
    ap.add_argument("--rank-temperature", type=float, default=0.1, help="T of softmax(-single-token loss / T)")
    ap.add_argument("--select", choices=["topk_precision", "top1_regret"], default="topk_precision",
                    help="validation metric of the saved epoch (top1_regret needs --rank-weight)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-text", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        train(args)
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
