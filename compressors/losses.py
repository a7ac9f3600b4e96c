"""Training losses of the two compressors (training only: none of them changes inference).

- ghm_loss: GHM-C (Li, Liu, Wang, AAAI 2019), the gradient-harmonised BCE EvoComp trains with.
- cosine_separation_loss: EvoComp's retained-versus-discarded cosine term.
- inter_class_cosine_loss: MOOSComp's over-smoothing term S (the caller adds beta * S).
"""
import torch
import torch.nn.functional as F


def ghm_loss(logits, targets, bins=10, momentum=0.75, state=None, mask=None):
    """Gradient-harmonised binary cross-entropy; returns (loss, new_state).

    g = |sigmoid(logit) - target| is bucketed into `bins` equal bins on [0, 1]; each example is
    weighted by N / (bin count * number of non-empty bins), N = valid examples, and the loss is the
    weighted BCE summed and divided by N. With momentum > 0 the bin count is the EMA
    state = momentum * state + (1 - momentum) * count, updated only for bins hit this batch, as in
    the authors' code (mmdetection GHMC). Like theirs, the state starts at zero, which makes the
    first steps' weights up to 1 / (1 - momentum) larger. Pass the returned state to the next call;
    the given state is not modified. mask (bool, same shape) marks valid examples.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have the same shape")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    targets = targets.to(logits.dtype)
    if ((targets < 0) | (targets > 1)).any():
        raise ValueError("targets must lie in [0, 1]")
    valid = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    if state is None:
        state = torch.zeros(bins, dtype=torch.float64)
    elif state.shape != (bins,):
        raise ValueError(f"state must have shape ({bins},), got {tuple(state.shape)}: pass the state this function returned")
    state = state.detach().to(torch.float64).clone()

    g = (torch.sigmoid(logits.detach()) - targets).abs()
    # Bin i holds edges[i] <= g < edges[i + 1] with edges i / bins; g == 1 goes to the top bin.
    inner_edges = torch.arange(1, bins, dtype=g.dtype) / bins
    bin_idx = torch.bucketize(g, inner_edges, right=True)
    counts = torch.bincount(bin_idx[valid], minlength=bins).to(torch.float64)
    hit = counts > 0
    total = max(int(valid.sum()), 1)
    if momentum > 0:
        state[hit] = momentum * state[hit] + (1 - momentum) * counts[hit]
        density = state
    else:
        density = counts
    per_bin = torch.zeros(bins, dtype=torch.float64)
    per_bin[hit] = total / density[hit] / max(int(hit.sum()), 1)
    weights = (per_bin[bin_idx] * valid).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (weights * bce).sum() / total, state


def _mean_cross_cosine(h, a, b, per_sample=False):
    """Mean over all within-sequence pairs (i in a, j in b) of cos(h_i, h_j); 0 if there is no pair.

    Pooled: one mean over every pair of the batch. per_sample: each sequence's own mean, then the
    mean over the sequences that have a pair. Uses sum_ij cos = (sum_i h^_i) . (sum_j h^_j), so no
    N x N matrix is built.
    """
    if h.dim() == 2:
        h, a, b = h[None], a[None], b[None]
    if h.dim() != 3 or a.shape != h.shape[:-1] or b.shape != h.shape[:-1]:
        raise ValueError(f"hidden states must be [N, D] or [B, N, D] with a [N] / [B, N] mask, got {tuple(h.shape)} and {tuple(a.shape)}")
    hn = F.normalize(h, dim=-1, eps=1e-12)
    a, b = a.to(hn.dtype), b.to(hn.dtype)
    sum_a = (hn * a[..., None]).sum(dim=1)
    sum_b = (hn * b[..., None]).sum(dim=1)
    pairs = a.sum(dim=1) * b.sum(dim=1)
    totals = (sum_a * sum_b).sum(dim=-1)
    if per_sample:
        has = pairs > 0
        return (totals[has] / pairs[has]).sum() / has.sum().clamp(min=1)
    return totals.sum() / pairs.sum().clamp(min=1)


def cosine_separation_loss(h, keep_mask, reduction="sample"):
    """EvoComp's L_CS: mean cosine similarity between retained and discarded token features.

    h: [N, D] or [B, N, D]; keep_mask: bool [N] / [B, N] (True = retained). Minimising it pushes the
    two groups apart. reduction="sample" (the paper's): the mean over each sample's (discarded,
    retained) pairs, averaged over samples; "pooled": one mean over all pairs of the batch.
    """
    if reduction not in ("sample", "pooled"):
        raise ValueError(f"reduction must be 'sample' or 'pooled', got {reduction!r}")
    keep = keep_mask.to(torch.bool)
    return _mean_cross_cosine(h, keep, ~keep, per_sample=reduction == "sample")


def inter_class_cosine_loss(hidden, labels, mask=None):
    """MOOSComp: S = mean over all pairs (i preserve, j discard) of cos(h_i, h_j).

    hidden: final-layer states [L, D] or [B, L, D]; labels: 1 = preserve, 0 = discard; any other
    label (e.g. -100) and positions with mask == 0 are ignored. Pairs are taken within a sequence
    and pooled over the batch. The training loss is cross-entropy + beta * S (the caller adds it).
    """
    valid = torch.ones_like(labels, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    return _mean_cross_cosine(hidden, (labels == 1) & valid, (labels == 0) & valid)
