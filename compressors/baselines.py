"""Reference visual-token selectors that EvoComp is compared against.

Every selector takes the visual tokens first ([N, D] or [B, N, D], torch or numpy), exactly one of
k / ratio (as `evo.select`), plus its own inputs by keyword, and returns kept indices in original
order ([k] or [B, k], same kind as the input). `visionzip` also returns its merged contextual tokens
(`visionzip_signals` gives its inputs from a vision tower's layer).
These re-implement each method's selection rule on one token sequence; where they deviate from the
original code, the docstring says so (docs/EVOCOMP.md has the summary).
"""
import math

import torch
import torch.nn.functional as F

from compressors.evo import as_input_kind, as_torch, keep_count, select


def _tokens(visual_tokens):
    x, was_numpy = as_torch(visual_tokens)
    if x.dim() not in (2, 3) or x.shape[-2] == 0:
        raise ValueError(f"visual_tokens must be [N, D] or [B, N, D] with N >= 1, got shape {tuple(x.shape)}")
    return x, was_numpy


def random_select(visual_tokens, k=None, ratio=None, seed=0):
    """k tokens drawn uniformly without replacement; the same seed gives the same picks."""
    x, was_numpy = _tokens(visual_tokens)
    n = x.shape[-2]
    kk = keep_count(n, k, ratio)
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randperm(n, generator=g)[:kk].sort().values for _ in range(x.shape[0] if x.dim() == 3 else 1)]
    idx = torch.stack(rows) if x.dim() == 3 else rows[0]
    return as_input_kind(idx, was_numpy)


def grid_points(rows, cols, k):
    """k raster indices spread evenly over a rows x cols grid.

    Picks r rows (r ~ sqrt(k * rows / cols), so row and column spacing match), spaced evenly,
    shares k among them (counts differ by at most 1) and spaces each row's points evenly,
    shifting alternate rows by half a step so the pattern is staggered rather than striped.
    """
    r = min(rows, max(math.ceil(k / cols), round(math.sqrt(k * rows / cols))))
    counts = [k // r + (1 if i < k % r else 0) for i in range(r)]
    picked = []
    for i, c in enumerate(counts):
        row = math.floor((i + 0.5) * rows / r)
        shift = 0.25 if i % 2 == 0 else 0.75  # staggered offsets; both keep the c columns distinct
        cols_i = sorted({min(cols - 1, math.floor((j + shift) * cols / c)) for j in range(c)})
        picked += [row * cols + col for col in cols_i]
    return picked


def uniform_grid_select(visual_tokens, k=None, ratio=None, grid=None):
    """Content-blind spatial subsampling: k tokens spread evenly over the (rows, cols) token grid.

    `grid` defaults to a square grid (N must then be a perfect square, e.g. 576 = 24 x 24).
    """
    x, was_numpy = _tokens(visual_tokens)
    n = x.shape[-2]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} tokens is not a square grid: pass grid=(rows, cols)")
        grid = (side, side)
    if grid[0] * grid[1] != n:
        raise ValueError(f"grid {tuple(grid)} has {grid[0] * grid[1]} cells but there are {n} tokens")
    idx = torch.tensor(grid_points(grid[0], grid[1], keep_count(n, k, ratio)), dtype=torch.long)
    if x.dim() == 3:
        idx = idx.expand(x.shape[0], -1).contiguous()
    return as_input_kind(idx, was_numpy)


def l2_norm_select(visual_tokens, k=None, ratio=None):
    """The k tokens with the largest L2 norm (ties: lower index)."""
    x, was_numpy = _tokens(visual_tokens)
    return as_input_kind(select(x.float().norm(dim=-1), k=k, ratio=ratio), was_numpy)


def _divprune_one(x, kk):
    xn = F.normalize(x.float(), dim=-1, eps=1e-12)
    dist = 1.0 - xn @ xn.T
    n = x.shape[0]
    if n == 1:
        return torch.zeros(1, dtype=torch.long)
    # As DivPrune: start from the most isolated token (largest distance to its nearest neighbour).
    nearest = dist.masked_fill(torch.eye(n, dtype=torch.bool), float("inf")).min(dim=0).values
    chosen = [int(torch.argmax(nearest))]
    min_dist = dist[chosen[0]].clone()
    taken = torch.zeros(n, dtype=torch.bool)
    taken[chosen[0]] = True
    for _ in range(kk - 1):
        # Deviation: chosen tokens are masked out, so duplicates can never be picked twice.
        nxt = int(torch.argmax(min_dist.masked_fill(taken, -float("inf"))))
        chosen.append(nxt)
        taken[nxt] = True
        min_dist = torch.minimum(min_dist, dist[nxt])
    return torch.tensor(sorted(chosen), dtype=torch.long)


def divprune_select(visual_tokens, k=None, ratio=None):
    """DivPrune (Alvar et al., CVPR 2025): greedy max-min diversity on cosine distance (1 - cos).

    Starts from the token whose nearest neighbour is farthest, then repeatedly adds the token whose
    minimum distance to the chosen set is largest (argmax ties: lower index).
    """
    x, was_numpy = _tokens(visual_tokens)
    kk = keep_count(x.shape[-2], k, ratio)
    with torch.no_grad():
        idx = torch.stack([_divprune_one(t, kk) for t in x]) if x.dim() == 3 else _divprune_one(x, kk)
    return as_input_kind(idx, was_numpy)


def _visionzip_one(x, score, keys, n_dominant, n_context):
    dominant = select(score, k=n_dominant)
    rest_mask = torch.ones(x.shape[0], dtype=torch.bool)
    rest_mask[dominant] = False
    rest = rest_mask.nonzero().flatten()  # remaining tokens, original order
    if n_context == 0:
        return dominant, x.new_zeros(0, x.shape[-1])
    # As VisionZip's clip_encoder.py: every step-th remaining token is a merge target; each other token joins
    # the target with the most cosine-similar key; a contextual token is its target PLUS the mean of the tokens
    # that joined it (the target is not averaged in; a target nobody joins stays as it is: counts clamp at 1).
    step = max(1, len(rest) // n_context)
    is_target = torch.zeros(len(rest), dtype=torch.bool)
    is_target[torch.arange(0, len(rest), step)[:n_context]] = True
    targets, others = rest[is_target], rest[~is_target]
    kn = F.normalize(keys.float(), dim=-1, eps=1e-12)
    assign = torch.argmax(kn[others] @ kn[targets].T, dim=-1) if len(others) else others
    merged = x.new_zeros(n_context, x.shape[-1], dtype=torch.float32).index_add(0, assign, x[others].float())
    counts = torch.bincount(assign, minlength=n_context).clamp(min=1).to(merged.dtype)
    return dominant, (x[targets].float() + merged / counts[:, None]).to(x.dtype)


def visionzip_select(visual_tokens, k=None, ratio=None, attention=None, keys=None, contextual=None):
    """VisionZip (Yang et al., CVPR 2025; dvlab-research/VisionZip, visionzip/clip_encoder.py): dominant tokens
    plus merged contextual tokens.

    attention: the importance of each token ([N] / [B, N]); VisionZip's is the CLS token's attention to each
    patch at the vision tower's layer -2, summed over heads (`visionzip_signals`). keys: the features merging
    matches on ([N, Dk] / [B, N, Dk]); VisionZip's are that layer's keys, averaged over heads
    (`visionzip_signals`); without them the visual tokens themselves are matched (a deviation). The tokens
    merged are `visual_tokens`: VisionZip merges the tower's layer -2 hidden states before the projector.
    The budget k counts dominant + contextual tokens, so the LLM gets k tokens as with the other selectors;
    contextual defaults to k // 6 (VisionZip's 54 + 10 = 64). Dominant tokens are the top k - contextual by
    attention (ties: lower index); the rest are merged as `_visionzip_one` says, as the reference does.
    Returns (dominant indices [k - contextual] in original order, contextual tokens [contextual, D]).
    Deviation: no CLS token (VisionZip keeps the tower's CLS as one of its dominant tokens; MLLM inputs after
    the projector have none).
    """
    x, was_numpy = _tokens(visual_tokens)
    if attention is None:
        raise ValueError("visionzip_select needs attention= (one importance score per visual token)")
    score = as_torch(attention)[0]
    if score.shape != x.shape[:-1]:
        raise ValueError(f"attention must have shape {tuple(x.shape[:-1])} (one score per token), got {tuple(score.shape)}")
    keys = x if keys is None else as_torch(keys)[0]
    if keys.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"keys must have shape {tuple(x.shape[:-1])} + (Dk,), got {tuple(keys.shape)}")
    kk = keep_count(x.shape[-2], k, ratio)
    n_context = kk // 6 if contextual is None else contextual
    if not 0 <= n_context < kk:
        raise ValueError(f"contextual must be in [0, k) = [0, {kk}), got {n_context}")
    with torch.no_grad():
        if x.dim() == 2:
            idx, ctx = _visionzip_one(x, score, keys, kk - n_context, n_context)
        else:
            parts = [_visionzip_one(*a, kk - n_context, n_context) for a in zip(x, score, keys)]
            idx, ctx = torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])
    return as_input_kind(idx, was_numpy), as_input_kind(ctx, was_numpy)


def visionzip_signals(attention, keys, heads, cls_index=0):
    """VisionZip's `attention` and `keys` from one vision-tower layer (the reference uses layer -2), CLS removed.

    attention: that layer's attention probabilities [heads, L, L] or [B, heads, L, L] over L = 1 + N tokens with
    the CLS token at cls_index; keys: that layer's key projection output k_proj(layer_norm1(h)) [L, D] or
    [B, L, D] (e.g. a forward hook on CLIP's `encoder.layers[-2].self_attn.k_proj`). Returns (the CLS token's attention to
    each patch summed over heads [.., N], the keys averaged over heads [.., N, D / heads]), as clip_encoder.py
    and utils.CLIPAttention_forward compute them.
    """
    (a, was_numpy), k = as_torch(attention), as_torch(keys)[0]
    if a.dim() not in (3, 4) or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be [heads, L, L] or [B, heads, L, L], got shape {tuple(a.shape)}")
    if k.shape[:-1] != a.shape[:-3] + a.shape[-1:] or k.shape[-1] % heads:
        raise ValueError(f"keys must be [.., L, D] with L = {a.shape[-1]} and D divisible by heads ({heads}), "
                         f"got shape {tuple(k.shape)}")
    patches = [i for i in range(a.shape[-1]) if i != cls_index]
    score = a[..., cls_index, patches].float().sum(dim=-2)
    metric = k.reshape(*k.shape[:-1], heads, -1).float().mean(dim=-2)[..., patches, :]
    return as_input_kind(score, was_numpy), as_input_kind(metric, was_numpy)


def fastv_scores(attention, image_start, n_image):
    """FastV's ranking score: the last query token's attention to each image token, mean over heads.

    attention: one LLM layer's attention probabilities [heads, L, L] or [B, heads, L, L] (FastV
    uses layer K-1 = 1 and prunes from layer K = 2); image tokens occupy [image_start, image_start + n_image).
    """
    a = as_torch(attention)[0]
    if a.dim() not in (3, 4) or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be [heads, L, L] or [B, heads, L, L], got shape {tuple(a.shape)}")
    if image_start < 0 or image_start + n_image > a.shape[-1]:
        raise ValueError(f"image span [{image_start}, {image_start + n_image}) does not fit in the {a.shape[-1]}-token sequence")
    return a[..., -1, image_start:image_start + n_image].float().mean(dim=-2)


def fastv_select(visual_tokens, k=None, ratio=None, attention=None, image_start=None):
    """FastV-like (Chen et al., ECCV 2024): keep the image tokens the last token attends to most."""
    x, was_numpy = _tokens(visual_tokens)
    if attention is None or image_start is None:
        raise ValueError("fastv_select needs attention= ([heads, L, L] from an LLM layer) and image_start=")
    scores = fastv_scores(attention, image_start, x.shape[-2])
    if scores.shape != x.shape[:-1]:
        raise ValueError(f"attention batch {tuple(scores.shape[:-1])} does not match visual_tokens batch {tuple(x.shape[:-2])}")
    return as_input_kind(select(scores, k=k, ratio=ratio), was_numpy)


SELECTORS = {
    "random": random_select,
    "uniform_grid": uniform_grid_select,
    "l2_norm": l2_norm_select,
    "divprune": divprune_select,
    "visionzip": visionzip_select,
    "fastv": fastv_select,
}
