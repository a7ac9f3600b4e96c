"""`python -m compressors.evo_eval`: EvoComp's accuracy table on easy-VQA, end to end, one command.

    python -m compressors.evo_eval --work WORK --out docs/evocomp_easyvqa

Steps, each cached in WORK and resumed when rerun: the easy-VQA MLLM (compressors.easyvqa_mllm), the
label search on a seeded subset of the TRAIN split (compressors.evo_label), EvoComp and its ablations
(and `evocomp_ranked`, not the paper's method: + a listwise term on single-token answer losses)
trained on those labels (compressors.train_evo), then easy-VQA TEST accuracy (a seeded subset of
questions) with all visual tokens and at each compression ratio, for EvoComp, its ablations and every
selector of compressors.baselines. Writes OUT.json, OUT.md and OUT.png (accuracy vs ratio).

Pruning inside the LLM happens after layer l = 2 as in the paper (`evocomp_l2`, FastV with K = 2: ranked by
layer 1's attention of the last token, pruned from layer 2 on), or after the last layer but one when the LLM
has fewer than 3 decoder layers: on the 2-layer easy-VQA MLLMs that is l = K = 1 (`evocomp_l1`), since pruning
after the last layer could not change the answer.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from compkit.errors import CompkitError
from compkit.files import write_json, write_text
from compressors import baselines, easyvqa_data
from compressors.evo import EvoCompressor, keep_count, select
from compressors.evo_label import LlavaAdapter

RATIOS = (2, 3, 4, 8, 16)  # plus N itself: the highest ratio the grid allows keeps one token
# name -> train_evo options; the paper's full recipe is GHM + cosine, paper variant, with text
ABLATIONS = {
    "evocomp": [],
    "random_labels": ["--random-labels"],
    "ce_only": ["--loss", "ce", "--alpha", "0"],
    "ghm_only": ["--alpha", "0"],
    "compact": ["--variant", "compact"],
    "no_text": ["--no-text"],
    # not the paper's method: the paper's loss + a listwise term on single-token answer losses (train_evo --rank-weight)
    "evocomp_ranked": ["--rank-weight", "1", "--select", "top1_regret"],
}
BASELINES = ("random", "uniform_grid", "l2_norm", "divprune", "visionzip", "fastv")


class Sample:
    __slots__ = ("visual", "text", "answer", "cls_attn", "keys", "fastv", "question_first")

    @property
    def image_start(self):
        """Where the visual tokens start in the LLM's sequence: after [BOS], or after [BOS] + question."""
        return 1 + (len(self.text) if self.question_first else 0)


@torch.no_grad()
def vision_extras(model, pixels):
    """VisionZip's inputs at the feature layer (LLaVA's -2): head-summed CLS attention [N] and head-mean keys [N, Dh]."""
    tower = model.model.vision_tower
    encoder = tower.encoder if hasattr(tower, "encoder") else tower.vision_model.encoder
    # the layer that produced the feature hidden state (LLaVA's -2: layers[-2]); for hidden state 0, the patch
    # embeddings, the first layer's attention over them
    at = max(model.config.vision_feature_layer % (len(encoder.layers) + 1) - 1, 0)
    layer = encoder.layers[at]
    got = {}
    hook = layer.self_attn.k_proj.register_forward_hook(lambda m, i, o: got.__setitem__("k", o))
    try:
        out = tower(pixels, output_attentions=True)
    finally:
        hook.remove()
    attn = out.attentions[at][0]  # [heads, 1 + N, 1 + N]
    heads = attn.shape[0]
    keys = got["k"][0].reshape(attn.shape[-1], heads, -1).mean(1)
    return attn[:, 0, 1:].sum(0), keys[1:]


def prepare(adapter, tok, processor, items, max_text, batch=64, question_first=False):
    """Per question: visual tokens, question embeddings, answer id, VisionZip and FastV inputs; question_first:
    the MLLM's prompt is [BOS] question image (compressors.easyvqa_mllm's MLLMConfig.question_first)."""
    from compressors.evo_label_cli import pixel_values
    from compressors.train_evo import features
    feats = features(adapter, tok, processor, items, max_text)
    model, out, vz = adapter.model, [], {}
    for (path, _, answer), (v, t) in zip(items, feats):
        s = Sample()
        s.visual, s.text, s.question_first = v, t, question_first
        s.answer = tok(" " + answer, add_special_tokens=False)["input_ids"][0]
        if path not in vz:
            vz[path] = vision_extras(model, pixel_values(processor, path))
        s.cls_attn, s.keys = vz[path]
        out.append(s)
    # FastV (K = the in-LLM pruning layer): layer K-1's attention of the last token over the image span, full sequences
    fastv_k = in_llm_layer(adapter)
    for b in range(0, len(out), batch):
        chunk = out[b:b + batch]
        emb, att, _ = sequences(adapter, chunk, [s.visual for s in chunk])
        attn = {}
        hook = adapter.lm.layers[fastv_k - 1].self_attn.register_forward_hook(lambda m, i, o: attn.__setitem__("w", o[1]))
        try:
            adapter._layers(emb, torch.arange(emb.shape[1])[None].expand(len(chunk), -1), att, adapter.lm.layers[:fastv_k])
        finally:
            hook.remove()
        for s, w, length in zip(chunk, attn["w"], att.sum(1)):
            s.fastv = baselines.fastv_scores(w[:, :length, :length], s.image_start, s.visual.shape[0])
    return out


def sequences(adapter, samples, visual):
    """Right-padded [BOS] + visual + question embeddings (or [BOS] + question + visual), attention mask, and the
    last real position."""
    bos = adapter.model.get_input_embeddings()(torch.tensor([adapter.model.config.text_config.bos_token_id]))
    rows = [torch.cat([bos, s.text, v] if s.question_first else [bos, v, s.text]) for s, v in zip(samples, visual)]
    length = max(len(r) for r in rows)
    emb = torch.zeros(len(rows), length, rows[0].shape[-1])
    att = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        emb[i, :len(r)], att[i, :len(r)] = r, 1
    return emb, att, att.sum(1) - 1


@torch.no_grad()
def correct(adapter, samples, visual=None, keep=None, prune_layer=0, batch=256):
    """BoolTensor[S]: whether each answer is right with `visual` (the tokens the LLM gets, l = 0) or `keep` (kept
    indices, pruned after `prune_layer` decoder layers that saw every token)."""
    hits = []
    for b in range(0, len(samples), batch):
        chunk = samples[b:b + batch]
        vis = None if visual is None else visual[b:b + batch]
        pred = answer_logits(adapter, chunk, vis, None if keep is None else keep[b:b + batch], prune_layer).argmax(-1)
        hits.append(pred == torch.tensor([s.answer for s in chunk]))
    return torch.cat(hits)


def accuracy(adapter, samples, visual=None, keep=None, prune_layer=0, batch=256):
    return int(correct(adapter, samples, visual, keep, prune_layer, batch).sum()) / len(samples)


def paired_interval(a, b, z=1.96):
    """[lo, hi]: the normal 95% interval of mean(a - b) for two methods' per-question correctness on the same
    questions; paired, so the questions both get right or both get wrong add no noise."""
    d = a.double() - b.double()
    half = z * float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("inf")
    return [float(d.mean()) - half, float(d.mean()) + half]


def answer_logits(adapter, chunk, visual=None, keep=None, prune_layer=0):
    """[B, V] logits that predict the answer, for accuracy's two paths (its arguments, for one batch)."""
    if prune_layer == 0:
        emb, att, last = sequences(adapter, chunk, [s.visual for s in chunk] if visual is None else visual)
        h = adapter.lm(inputs_embeds=emb, attention_mask=att).last_hidden_state
    else:
        emb, att, _ = sequences(adapter, chunk, [s.visual for s in chunk])
        pos = torch.arange(emb.shape[1])[None].expand(len(chunk), -1)
        h = adapter._layers(emb, pos, att, adapter.lm.layers[:prune_layer])
        k = torch.zeros_like(att, dtype=torch.bool)
        for i, (s, idx) in enumerate(zip(chunk, keep)):
            n = s.visual.shape[0]
            k[i] = att[i].bool()
            k[i, s.image_start:s.image_start + n] = False
            k[i, s.image_start + torch.as_tensor(idx)] = True
        h, _, att, pos = adapter._gather(h, k, torch.full((emb.shape[1],), -100))
        h = adapter.lm.norm(adapter._layers(h, pos, att, adapter.lm.layers[prune_layer:]))
        last = att.sum(1) - 1
    return adapter.model.lm_head(h[torch.arange(len(chunk)), last])


@torch.no_grad()
def evo_scores(model, samples, use_text=True, batch=256):
    """Keep logits [S, N] of one compressor for every sample (the ranking does not depend on k)."""
    t_max = model.config.max_text_tokens
    out = []
    for b in range(0, len(samples), batch):
        chunk = samples[b:b + batch]
        v = torch.stack([s.visual for s in chunk])
        t = torch.zeros(len(chunk), t_max, v.shape[-1])
        m = torch.zeros(len(chunk), t_max)
        for i, s in enumerate(chunk):
            t[i, :len(s.text)], m[i, :len(s.text)] = s.text, 1.0 if use_text else 0.0
        out.append(model(v, t, m))
    return torch.cat(out)


def baseline_tokens(name, s, k, grid):
    """(tokens the LLM gets at l = 0, or None) and kept indices, for one sample."""
    sel = baselines.SELECTORS[name]
    if name == "visionzip":
        idx, ctx = sel(s.visual, k=k, attention=s.cls_attn, keys=s.keys)
        return torch.cat([s.visual[idx], ctx]), idx
    if name == "fastv":
        return None, torch.sort(torch.topk(s.fastv, k, sorted=True).indices).values
    extra = {"grid": grid} if name == "uniform_grid" else {}
    idx = sel(s.visual, k=k, **extra)
    return s.visual[idx], idx


def ratios_for(n):
    return sorted({r for r in RATIOS if r < n} | {n})


def in_llm_layer(adapter, paper=2):
    """Where EvoComp (l) and FastV (K) prune inside the LLM: after layer 2 as the paper, or after the last layer
    but one of a shallower LLM (after the last one nothing could change)."""
    return max(1, min(paper, len(adapter.lm.layers) - 1))


def table(adapter, samples, compressors, grid, log=print, hits=None):
    """{method: {ratio: accuracy}}; `hits`, a dict, also gets each cell's per-question correctness."""
    n = samples[0].visual.shape[0]
    layer = in_llm_layer(adapter)
    hits = {} if hits is None else hits

    def cell(*a, row, ratio, **k):
        hits.setdefault(row, {})[ratio] = got = correct(*a, **k)
        return float(got.double().mean())

    full = cell(adapter, samples, row="all_tokens", ratio="1")
    rows = {"all_tokens": {str(r): full for r in [1] + ratios_for(n)}}
    log(f"all tokens: {full:.4f}")
    scores = {name: evo_scores(model, samples, use_text) for name, (model, use_text) in compressors.items()}
    for r in ratios_for(n):
        k = keep_count(n, ratio=r)
        for name in compressors:
            keep = list(select(scores[name], k=k))
            rows.setdefault(name, {})[str(r)] = cell(adapter, samples, visual=[s.visual[i] for s, i in zip(samples, keep)],
                                                     row=name, ratio=str(r))
            if name == "evocomp":
                inside = f"evocomp_l{layer}"
                rows.setdefault(inside, {})[str(r)] = cell(adapter, samples, keep=keep, prune_layer=layer, row=inside, ratio=str(r))
        for name in BASELINES:
            got = [baseline_tokens(name, s, k, grid) for s in samples]
            if name == "fastv":  # FastV prunes inside the LLM (after layer K)
                rows.setdefault(name, {})[str(r)] = cell(adapter, samples, keep=[g[1] for g in got], prune_layer=layer,
                                                         row=name, ratio=str(r))
            else:
                rows.setdefault(name, {})[str(r)] = cell(adapter, samples, visual=[g[0] for g in got], row=name, ratio=str(r))
        log(f"{r}x (keep {k}): " + ", ".join(f"{m} {v[str(r)]:.3f}" for m, v in rows.items()))
    return rows


@torch.no_grad()
def single_token_losses(adapter, samples, batch=256):
    """[S, N]: the answer loss of each sample when the LLM sees only its visual token i (l = 0)."""
    n = samples[0].visual.shape[0]
    losses = torch.zeros(len(samples), n)
    for b in range(0, len(samples), batch):
        chunk = samples[b:b + batch]
        answers = torch.tensor([s.answer for s in chunk])
        for i in range(n):
            emb, att, last = sequences(adapter, chunk, [s.visual[i:i + 1] for s in chunk])
            h = adapter.lm(inputs_embeds=emb, attention_mask=att).last_hidden_state
            logits = adapter.model.lm_head(h[torch.arange(len(chunk)), last])
            losses[b:b + batch, i] = torch.nn.functional.cross_entropy(logits, answers, reduction="none")
    return losses


def single_token_figures(losses, scores):
    """How good a compressor's top-1 token is (64x): the answer loss with only that visual token, against the
    best single token, a random one (the mean over tokens) and the rank of the pick among all N by loss."""
    rows, top = torch.arange(len(losses)), scores.argmax(1)
    picked = losses[rows, top]
    return {"samples": len(losses), "mean_loss_best_single": float(losses.min(1).values.mean()),
            "mean_loss_random_single": float(losses.mean()), "mean_loss_top1": float(picked.mean()),
            "mean_rank_top1": float((losses < picked[:, None]).sum(1).float().mean()), "tokens": losses.shape[1]}


TIE_TOL = 1e-5  # |loss difference| at or below this is a tie: float32 noise of the same mask in another batch is ~1e-7


def _compare(a, b, tol=TIE_TOL):
    """Shares of a strictly below b, tied with b (|a - b| <= tol), and above b."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    tie = np.abs(d) <= tol
    return float(((d < 0) & ~tie).mean()), float(tie.mean()), float(((d > 0) & ~tie).mean())


def random_masks(row, seed, n_random=None):
    """The random same-size masks a label line was compared with, rebuilt as evo_label_cli draws them."""
    n, k = len(row["groups"]), int(row["kept"])
    g = torch.Generator().manual_seed(seed + int(row["index"]) + 1)
    out = np.zeros((n_random or len(row["random_loss"]), n), dtype=bool)
    for r in range(len(out)):
        out[r, torch.randperm(n, generator=g)[:k].numpy()] = True
    return out


def search_figures(label_path, tol=TIE_TOL):
    """The label search against random same-size masks: strictly below, tied (|diff| <= tol) and above,
    per sample (against the mean of its random masks) and per sample-random pair; plus how many random
    masks were the searched mask itself (an exact tie by construction) and the split by kept count."""
    lines = Path(label_path).read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    loss = np.array([r["loss"] for r in rows])
    rand = np.array([r["random_loss"] for r in rows])
    below, tied, above = _compare(loss, rand.mean(1), tol)
    # a miss: the label not strictly below its random masks (as _compare); counted with those whose all-token loss is
    # not below them either, where the MLLM answers worse with the whole image than with random (mostly background) tokens
    miss = ~(loss - rand.mean(1) < -tol)
    all_not_below = ~(np.array([r["all_tokens_loss"] for r in rows]) - rand.mean(1) < -tol)
    p_below, p_tied, p_above = _compare(loss[:, None], rand, tol)
    seed = header.get("config", {}).get("seed", 0)
    same = np.array([(random_masks(r, seed) == np.array(r["mask"], dtype=bool)).all(1) for r in rows])
    by_kept = {}
    for k in sorted({r["kept"] for r in rows}):
        sel = np.array([r["kept"] == k for r in rows])
        b, t, a = _compare(loss[sel], rand[sel].mean(1), tol)
        by_kept[str(k)] = {"samples": int(sel.sum()), "strictly_below_mean_random": b, "tied_mean_random": t,
                           "above_mean_random": a}
    return {"samples": len(rows), "mean_searched_loss": float(loss.mean()),
            "mean_all_tokens_loss": float(np.mean([r["all_tokens_loss"] for r in rows])),
            "mean_random_same_size_loss": float(rand.mean()),
            "tie_tolerance": tol,
            "share_below_mean_random": below, "share_tied_mean_random": tied, "share_above_mean_random": above,
            "share_below_each_random": p_below, "share_tied_each_random": p_tied, "share_above_each_random": p_above,
            "share_random_is_searched_mask": float(same.mean()),
            "share_below_or_equal_mean_random": below + tied,
            "share_below_all_tokens": float(np.mean([r["loss"] < r["all_tokens_loss"] for r in rows])),
            "misses": int(miss.sum()), "misses_all_tokens_not_below_random": int((miss & all_not_below).sum()),
            "by_kept": by_kept,
            "mean_kept_tokens": float(np.mean([r["kept"] for r in rows])),
            "mean_groups_per_image": float(np.mean([len(set(r["groups"])) for r in rows])),
            "groups_histogram": {str(g): int(c) for g, c in zip(*np.unique([len(set(r["groups"])) for r in rows], return_counts=True))},
            "forwards_per_sample": float(np.mean([r["forwards"] for r in rows])),
            "seconds_per_sample": float(np.mean([r["seconds"] for r in rows]))}


def ensure_labels(mllm, work, n_labels, seed, log, data="easy-vqa", question_first=False):
    from compressors import evo_label_cli
    labels = work / "labels.jsonl"
    argv = ["--mllm", str(mllm), "--data", f"{data}:train", "--subset-seed", str(seed), "--limit", str(n_labels),
            "--out", str(labels), "--seed", str(seed)] + (["--prompt", "{question} <image>"] if question_first else [])
    log(f"label search: python -m compressors.evo_label {' '.join(argv)}")
    if evo_label_cli.main(argv) != 0:
        raise SystemExit(2)
    return labels


def ensure_compressors(mllm, labels, work, epochs, seed, log, names=tuple(ABLATIONS)):
    from compressors import train_evo
    out = {}
    for name, extra in ((n, ABLATIONS[n]) for n in names):
        ckpt = work / name
        if not (ckpt / "train_metrics.json").is_file():
            argv = ["--mllm", str(mllm), "--labels", str(labels), "--out", str(ckpt), "--epochs", str(epochs),
                    "--seed", str(seed), *extra]
            log(f"training {name}: python -m compressors.train_evo {' '.join(argv)}")
            train_evo.train(train_evo.parser().parse_args(argv), log=lambda *_: None)
        out[name] = (EvoCompressor.load(ckpt), "--no-text" not in extra)
    return out


def accuracy_by_kind(hits, items):
    """{method: {ratio: {question kind: accuracy}}} from table()'s per-question hits: which questions a selector loses."""
    return {row: {r: easyvqa_data.share_by_kind(items, h.tolist()) for r, h in cells.items()} for row, cells in hits.items()}


def by_kind_lines(result, ratio="4"):
    by_kind = result.get("accuracy_by_kind")
    if not by_kind or "all_tokens" not in by_kind:
        return []
    kinds = list(by_kind["all_tokens"]["1"])
    lines = ["", f"By question kind at {ratio}x (all tokens: every visual token):", "",
             "| method | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for row, cells in by_kind.items():
        cell = cells.get("1" if row == "all_tokens" else ratio)
        if cell:
            lines.append(f"| {row} | " + " | ".join(f"{cell[k]:.3f}" for k in kinds) + " |")
    return lines


L0_BASELINES = tuple(b for b in BASELINES if b != "fastv")  # FastV prunes inside the LLM: EvoComp's l > 0 row faces it


def targets(result, keep_at_3x=0.99, from_ratio=4, label_share=0.95):
    """The issue's three targets, judged on this table: EvoComp keeps >= 99% of all-token accuracy at 3x (judged for
    l = 0 and for the row pruned inside the LLM: the paper's 99.3% at 192 tokens is its l = 2 figure, l = 0 keeps
    98.7% there); it beats every baseline at 4x and above (l = 0 against the l = 0 selectors, pruned inside the LLM
    against FastV; a tie is not a win); the searched label is below the mean of its random same-size masks on >= 95%
    of samples."""
    rows, full = result["accuracy"], result["accuracy"]["all_tokens"]["1"]
    inside = next((k for k in rows if k.startswith("evocomp_l") and k[9:].isdigit()), None)
    high = [str(r) for r in result["ratios"] if r >= from_ratio]
    margins = {}
    for row, rivals in (("evocomp", [b for b in L0_BASELINES if b in rows]), (inside, ["fastv"] if "fastv" in rows else [])):
        if row and rivals:
            margins[row] = {r: {"margin": rows[row][r] - max(rows[b][r] for b in rivals),
                                "best_baseline": max(rivals, key=lambda b: rows[b][r])} for r in high}
            for r, m in margins[row].items():  # evo_eval's own runs carry the paired 95% interval of each margin
                if (result.get("margin_ci") or {}).get(row, {}).get(r):
                    m["ci95"] = result["margin_ci"][row][r]
    share = result["label_search"]["share_below_mean_random"]
    keeps = {row: {"share": rows[row]["3"] / full, "met": rows[row]["3"] / full >= keep_at_3x}
             for row in ("evocomp", inside) if row and "3" in rows[row]}
    return {"keeps_99_at_3x": keeps,
            "beats_every_baseline_from_4x": {"margins": margins,
                                             "met": {row: all(m["margin"] > 0 for m in ms.values()) for row, ms in margins.items()}},
            "label_below_random": {"share": share, "met": share >= label_share}}


def target_lines(t):
    yes = {True: "met", False: "not met"}
    lines = ["", "Targets (issue 11):"]
    for row, k in t["keeps_99_at_3x"].items():
        share = math.floor(k["share"] * 1e4) / 100  # truncated: a miss never prints as "99.00%"
        where = "l = 0" if row == "evocomp" else f"l = {row[9:]}"
        lines.append(f"- EvoComp ({where}) keeps >= 99% of all-token accuracy at 3x: {share:.2f}%, {yes[k['met']]}.")
    for row, ms in t["beats_every_baseline_from_4x"]["margins"].items():
        cells = ", ".join(f"{r}x {m['margin']:+.3f} ({m['best_baseline']}"
                          + (f"; 95% CI {m['ci95'][0]:+.3f} to {m['ci95'][1]:+.3f}" if "ci95" in m else "") + ")"
                          for r, m in ms.items())
        lines.append(f"- {row} beats every baseline at 4x and above: {yes[t['beats_every_baseline_from_4x']['met'][row]]}; "
                     f"margin over the best baseline {cells}.")
    lb = t["label_below_random"]
    lines.append(f"- The searched label below a random same-size mask on >= 95% of samples: {lb['share']:.1%}, {yes[lb['met']]}.")
    return lines


DATA_NAMES = {"easy-vqa": "easy-VQA", "easy-vqa-mosaic": "easy-VQA 2 x 2 mosaic"}


def write_outputs(result, out, log):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, ratios = result["accuracy"], ["1"] + [str(r) for r in result["ratios"]]
    full = rows["all_tokens"]["1"]
    data = DATA_NAMES[result.get("data", "easy-vqa")]
    total = result.get("test_split_questions")  # tables before 2026-12-06 did not record the split's size
    which = "all of them" if total == result["test_questions"] else f"a seeded subset of {total}" if total else "seeded subset"
    lines = [f"{data} test accuracy, {result['test_questions']} questions ({which}), {result['visual_tokens']} visual tokens; "
             f"cells: accuracy (share of all-token accuracy)", "",
             "| method | " + " | ".join(f"{r}x (keep {keep_count(result['visual_tokens'], ratio=int(r))})" for r in ratios[1:]) + " |",
             "|---|" + "---|" * (len(ratios) - 1)]
    m = result.get("mllm_test_accuracy") or {}
    if "test_accuracy_no_image" in m:
        lines[1:1] = ["", f"MLLM {result['mllm']}: {m['test_accuracy']:.4f} on all {data} TEST questions with every "
                      f"visual token, {m['test_accuracy_no_image']:.4f} with none (the question alone)."]
    for name, acc in rows.items():
        if name == "all_tokens":
            lines.append("| all tokens | " + " | ".join(f"{full:.3f}" for _ in ratios[1:]) + " |")
            continue
        lines.append(f"| {name} | " + " | ".join(f"{acc[r]:.3f} ({acc[r] / max(full, 1e-9):.1%})" for r in ratios[1:]) + " |")
    s = result["label_search"]
    lines += ["", f"Label search ({s['samples']} train samples): MLLM answer loss of the searched mask {s['mean_searched_loss']:.4f}, "
              f"all tokens {s['mean_all_tokens_loss']:.4f}, random masks of the same size {s['mean_random_same_size_loss']:.4f}. "
              f"Against the mean of its random masks the searched mask is strictly below on {s['share_below_mean_random']:.1%} of samples, "
              f"tied (|diff| <= {s['tie_tolerance']:g}) on {s['share_tied_mean_random']:.1%}, above on {s['share_above_mean_random']:.1%}; "
              f"per sample-random pair {s['share_below_each_random']:.1%} / {s['share_tied_each_random']:.1%} / {s['share_above_each_random']:.1%} "
              f"(the random mask was the searched mask itself in {s['share_random_is_searched_mask']:.1%} of pairs); "
              f"< all tokens on {s['share_below_all_tokens']:.1%}; of the {s['misses']} samples it is not below on, "
              f"{s['misses_all_tokens_not_below_random']} have the all-token loss not below the random masks either; "
              f"{s['mean_groups_per_image']:.2f} groups (= kept tokens) per image "
              f"(histogram {s['groups_histogram']}); {s['forwards_per_sample']:.0f} forwards, {s['seconds_per_sample']:.2f} s per sample.",
              "", "| kept tokens | samples | strictly below mean random | tied | above |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {v['samples']} | {v['strictly_below_mean_random']:.1%} | {v['tied_mean_random']:.1%} | {v['above_mean_random']:.1%} |"
              for k, v in s["by_kept"].items()]
    if "evocomp_single_token" in result:
        f = result["evocomp_single_token"]
        lines += ["", f"EvoComp's top-1 token (64x), {f['samples']} test questions: answer loss with only that token "
                  f"{f['mean_loss_top1']:.4f}, with the best single token {f['mean_loss_best_single']:.4f}, with a random "
                  f"one {f['mean_loss_random_single']:.4f}; its mean rank among the {f['tokens']} tokens by loss "
                  f"{f['mean_rank_top1']:.1f} (0 = the best)."]
        others = {k: v for k, v in result.get("single_token", {}).items() if k != "evocomp"}
        if others:
            lines += ["", "Top-1 token of each trained compressor: " + "; ".join(
                f"{k} loss {v['mean_loss_top1']:.4f}, rank {v['mean_rank_top1']:.1f}" for k, v in others.items()) + "."]
    lines += by_kind_lines(result)
    result = dict(result, targets=targets(result))  # the caller's dict stays as it was
    lines += target_lines(result["targets"])
    write_json(str(out.with_suffix(".json")), result)
    write_text(str(out.with_suffix(".md")), "\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, acc in rows.items():
        style = "-o" if name.startswith("evocomp") else ("--" if name in BASELINES or name == "all_tokens" else ":")
        ax.plot([int(r) for r in ratios[1:]], [acc[r] for r in ratios[1:]], style, label=name, linewidth=2 if name == "evocomp" else 1)
    ax.set_xscale("log", base=2), ax.set_xlabel("compression ratio (visual tokens)"), ax.set_ylabel(f"{data} test accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(fig)
    log("\n".join(lines))


def mllm_metrics(mllm: Path) -> dict:
    """What easyvqa_mllm writes beside an easy-VQA checkpoint (easyvqa_metrics.json), {} for another MLLM."""
    try:
        metrics = json.loads((mllm / "easyvqa_metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def mllm_accuracy(mllm: Path) -> dict:
    """The easy-VQA MLLM's own TEST figures, {} for another."""
    metrics = mllm_metrics(mllm)
    return {k: metrics[k] for k in ("test_accuracy", "test_accuracy_no_image") if k in metrics}


def question_first(mllm: Path) -> bool:
    """Whether an easy-VQA MLLM was trained with the question before the image (False for any other)."""
    config = mllm_metrics(mllm).get("config")
    return bool(config.get("question_first")) if isinstance(config, dict) else False


def main(argv=None):
    from compressors import easyvqa_mllm
    ap = argparse.ArgumentParser(prog="python -m compressors.evo_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="folder for labels and trained compressors (resumed)")
    ap.add_argument("--out", required=True, help="output stem: writes STEM.json, STEM.md, STEM.png")
    ap.add_argument("--mllm", help="LLaVA checkpoint (default: the cached easy-VQA MLLM of --data, recipe "
                    f"{easyvqa_mllm.DEFAULT_RECIPE!r}, trained if missing)")
    ap.add_argument("--data", choices=easyvqa_data.DATA_SETS, default="easy-vqa",
                    help="labels on its TRAIN split, accuracy on its TEST split; easy-vqa-mosaic: 2 x 2 mosaics, "
                         "each question about one named tile (default MLLM: the 'mosaic' recipe)")
    ap.add_argument("--labels", type=int, default=300, help="train samples to label")
    ap.add_argument("--test", type=int, default=2000, help="test questions (seeded subset)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablations", default=",".join(ABLATIONS),
                    help="comma-separated compressors to train and measure (evocomp is always one); default: all of "
                         + ", ".join(ABLATIONS))
    args = ap.parse_args(argv)
    names = ["evocomp"] + [n for n in dict.fromkeys(args.ablations.split(",")) if n and n != "evocomp"]
    if unknown := [n for n in names if n not in ABLATIONS]:
        ap.error(f"unknown --ablations {', '.join(unknown)}: choose from {', '.join(ABLATIONS)}")
    torch.set_num_threads(1)
    from compressors.evo_label_cli import load_llava
    t0, work = time.time(), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        recipe = easyvqa_mllm.RECIPES["mosaic" if args.data == "easy-vqa-mosaic" else easyvqa_mllm.DEFAULT_RECIPE]
        mllm = Path(args.mllm) if args.mllm else easyvqa_mllm.trained_mllm_dir(easyvqa_mllm.MLLMConfig(**recipe))
        mllm_acc, qfirst = mllm_accuracy(mllm), question_first(mllm)
        if "test_accuracy_no_image" in mllm_acc and not easyvqa_mllm.uses_image(mllm_acc):
            print(f"warning: the MLLM {mllm.name} answers from the question alone ({mllm_acc['test_accuracy']:.4f} with "
                  f"the image, {mllm_acc['test_accuracy_no_image']:.4f} without): no visual-token selection can "
                  "matter on it", file=sys.stderr)
        labels = ensure_labels(mllm, work, args.labels, args.seed, print, data=args.data, question_first=qfirst)
        compressors = ensure_compressors(mllm, labels, work, args.epochs, args.seed, print, names)
        model, tok, processor = load_llava(mllm)
    except CompkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    adapter = LlavaAdapter(model)
    test = easyvqa_data.data_split(args.data, "test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:args.test]
    samples = prepare(adapter, tok, processor, [test[i] for i in pick], compressors["evocomp"][0].config.max_text_tokens,
                      question_first=qfirst)
    n = samples[0].visual.shape[0]
    side = int(round(n ** 0.5))
    hits = {}
    rows = table(adapter, samples, compressors, (side, n // side), hits=hits)
    losses = single_token_losses(adapter, samples)
    single = {name: single_token_figures(losses, evo_scores(m, samples, text)) for name, (m, text) in compressors.items()}
    result = {"mllm": mllm.name, "data": args.data, "mllm_test_accuracy": mllm_acc, "test_questions": len(samples), "test_split_questions": len(test), "visual_tokens": n, "ratios": ratios_for(n),
              "accuracy": rows, "label_search": search_figures(labels), "evocomp_single_token": single["evocomp"], "single_token": single,
              "compressors": {k: m.provenance for k, (m, _) in compressors.items()},
              "seconds": round(time.time() - t0, 1), "command": "python -m compressors.evo_eval " + " ".join(argv or sys.argv[1:]).replace(str(Path.home()), "~")}
    if args.data == "easy-vqa":
        result["accuracy_by_kind"] = accuracy_by_kind(hits, [test[i] for i in pick])
    t = targets(result)  # its best baseline per ratio, then the paired interval of each margin
    result["margin_ci"] = {row: {r: paired_interval(hits[row][r], hits[m["best_baseline"]][r]) for r, m in ms.items()}
                           for row, ms in t["beats_every_baseline_from_4x"]["margins"].items()}
    write_outputs(result, args.out, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
