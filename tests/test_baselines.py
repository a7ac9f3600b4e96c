import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compressors.baselines import (SELECTORS, divprune_select, fastv_scores, fastv_select, grid_points, l2_norm_select,
                                   random_select, uniform_grid_select, visionzip_select, visionzip_signals)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def extras(name, x):
    """The method-specific inputs each selector needs, for tokens x [.., N, D]."""
    n = x.shape[-2]
    if name == "visionzip":
        return dict(attention=x[..., 0].abs())
    if name == "fastv":
        a = torch.softmax(rand(*x.shape[:-2], 2, n + 7, n + 7, seed=9), dim=-1)
        return dict(attention=a, image_start=3)
    return {}


def indices(name, out):
    return out[0] if name == "visionzip" else out


# ---- the shared interface ------------------------------------------------------------------------

def test_registry_names():
    assert set(SELECTORS) == {"random", "uniform_grid", "l2_norm", "divprune", "visionzip", "fastv"}


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_interface_shapes_order_and_kinds(name):
    fn = SELECTORS[name]
    x = rand(2, 36, 8, seed=1)
    for inp in (x[0], x):  # [N, D] and [B, N, D]
        out = indices(name, fn(inp, ratio=3.0, **extras(name, inp)))
        assert out.dtype == torch.int64
        rows = out[None] if out.dim() == 1 else out
        assert rows.shape[0] == (1 if inp.dim() == 2 else 2)
        for r in rows.tolist():
            assert r == sorted(set(r)) and 0 <= r[0] and r[-1] < 36
        expected = 12 if name != "visionzip" else 12 - 12 // 6
        assert out.shape[-1] == expected
    np_out = fn(x.numpy(), k=6, **{k: (v.numpy() if torch.is_tensor(v) else v) for k, v in extras(name, x).items()})
    assert isinstance(indices(name, np_out), np.ndarray)
    with pytest.raises(ValueError):
        fn(x, k=37, **extras(name, x))
    with pytest.raises(ValueError):
        fn(x, k=3, ratio=2.0, **extras(name, x))


# ---- random ---------------------------------------------------------------------------------------

def test_random_is_seeded():
    x = rand(2, 100, 4)
    a, b, c = random_select(x, k=10, seed=7), random_select(x, k=10, seed=7), random_select(x, k=10, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # batch rows draw independently


# ---- uniform grid --------------------------------------------------------------------------------

def nearest_kept_distance(picked, rows, cols):
    """For every grid cell, the distance (in cells) to the nearest kept token."""
    cells = torch.tensor([(i // cols, i % cols) for i in range(rows * cols)], dtype=torch.float32)
    return torch.cdist(cells, cells[torch.as_tensor(picked)]).min(dim=1).values


@pytest.mark.parametrize("ratio", [1.5, 2, 3, 4, 6, 9, 16, 36])
def test_uniform_grid_spreads_evenly_over_24x24(ratio):
    x = torch.zeros(576, 4)
    idx = uniform_grid_select(x, ratio=ratio).tolist()
    k = len(idx)
    # Every token lies within ~sqrt(N/k) cells of a kept one (the spacing of an ideal lattice) ...
    dist = nearest_kept_distance(idx, 24, 24)
    assert dist.max() <= 1.3 * math.sqrt(576 / k)
    # ... and on average tokens are closer to a kept one than with random picks of the same size.
    assert all(dist.mean() < nearest_kept_distance(random_select(x, k=k, seed=s), 24, 24).mean() for s in range(5))
    # Rows in use are evenly spaced and share the budget to within one token.
    per_row = np.bincount(np.array(idx) // 24, minlength=24)
    used = np.flatnonzero(per_row)
    assert per_row[used].max() - per_row[used].min() <= 1
    assert np.diff(used).max() - np.diff(used).min() <= 1 if len(used) > 1 else True


def test_uniform_grid_full_budget_and_rectangular_grids():
    assert grid_points(24, 24, 576) == list(range(576))
    for rows, cols in [(16, 32), (5, 7)]:
        for k in range(1, rows * cols + 1):
            p = grid_points(rows, cols, k)
            assert len(set(p)) == k and p == sorted(p)
    out = uniform_grid_select(torch.zeros(3, 16 * 32, 2), k=50, grid=(16, 32))
    assert out.shape == (3, 50) and torch.equal(out[0], out[2])


def test_uniform_grid_errors():
    with pytest.raises(ValueError, match="not a square grid"):
        uniform_grid_select(torch.zeros(10, 2), k=3)
    with pytest.raises(ValueError, match="cells"):
        uniform_grid_select(torch.zeros(12, 2), k=3, grid=(3, 5))


# ---- L2 norm -------------------------------------------------------------------------------------

def test_l2_picks_the_largest_norms_with_lower_index_ties():
    x = rand(50, 6, seed=3)
    norms = x.norm(dim=-1)
    idx = l2_norm_select(x, k=10)
    assert norms[idx].min() >= norms[[i for i in range(50) if i not in idx.tolist()]].max()
    tied = torch.tensor([[3.0, 4.0], [0.0, 5.0], [1.0, 0.0], [5.0, 0.0]])  # norms 5, 5, 1, 5
    assert l2_norm_select(tied, k=2).tolist() == [0, 1]


# ---- DivPrune --------------------------------------------------------------------------------------

def min_pairwise_distance(x, idx):
    xn = F.normalize(x[idx], dim=-1)
    d = 1 - xn @ xn.T
    return d[~torch.eye(len(idx), dtype=torch.bool)].min().item()


def test_divprune_is_more_diverse_than_random():
    x = rand(576, 32, seed=4) + 0.5  # a shared offset makes the tokens correlated, like real features
    idx = divprune_select(x, ratio=9)
    ours = min_pairwise_distance(x, idx)
    assert all(ours > min_pairwise_distance(x, random_select(x, k=len(idx), seed=s)) for s in range(10))


def test_divprune_takes_one_token_per_cluster_starting_from_the_most_isolated():
    centres = torch.eye(4, 8)
    x = centres.repeat_interleave(10, dim=0) + 0.01 * rand(40, 8, seed=5)  # 4 tight clusters of 10 tokens
    x[37] = -centres[0]  # opposite cluster 0: no close neighbour, so DivPrune starts here
    idx = divprune_select(x, k=5).tolist()
    assert 37 in idx
    assert sorted({i // 10 for i in idx if i != 37}) == [0, 1, 2, 3]


def reference_divprune(visual_feature_vectors, n_keep):
    """vbdi/divprune LLaVA/llava/model/llava_arch.py (DivPrune, pairwise_cosine_similarity), transcribed; sorted as
    prepare_inputs_labels_for_multimodal sorts keep_indexs."""
    norm_matrix = visual_feature_vectors / visual_feature_vectors.norm(dim=1, keepdim=True)
    cosine_matrix = 1.0 - torch.mm(norm_matrix, norm_matrix.t())
    s = torch.empty(n_keep, dtype=torch.long)
    for i in range(n_keep):
        m2 = cosine_matrix if i == 0 else torch.index_select(cosine_matrix, 0, torch.index_select(s, 0, torch.arange(0, i)))
        scores = torch.topk(m2, 2, dim=0, largest=False).values[1, :] if i == 0 else torch.min(m2, dim=0).values
        s[i] = torch.argmax(scores)
    return s.sort().values


@pytest.mark.parametrize("n,k", [(36, 12), (576, 64), (576, 192)])
def test_divprune_matches_the_reference_on_random_tokens(n, k):
    x = rand(n, 32, seed=n + k) + 0.3
    assert divprune_select(x, k=k).tolist() == reference_divprune(x, k).tolist()


def test_divprune_never_repeats_tokens_on_duplicates():
    x = torch.ones(2, 10, 3)
    out = divprune_select(x, k=4)
    assert out.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


# ---- VisionZip -----------------------------------------------------------------------------------

def reference_visionzip(hidden_states, attn_weights, metric, dominant_num, contextual_num):
    """dvlab-research/VisionZip visionzip/clip_encoder.py (CLIPVisionTower_VisionZip.forward), transcribed line by
    line: the [B, 1 + N] tokens with CLS at 0, that layer's attention [B, heads, 1 + N, 1 + N] and head-mean keys."""
    cls_idx = 0
    cls_attention = attn_weights[:, :, cls_idx, cls_idx + 1:]
    cls_attention_sum = cls_attention.sum(dim=1)
    topk_indices = cls_attention_sum.topk(dominant_num, dim=1).indices + 1
    all_indices = torch.cat([torch.zeros((hidden_states.shape[0], 1), dtype=topk_indices.dtype), topk_indices], dim=1)
    mask = torch.ones_like(hidden_states[:, :, 0], dtype=torch.bool).scatter_(1, all_indices, False)
    dominant_tokens = hidden_states.masked_select(~mask.unsqueeze(-1)).view(hidden_states.shape[0], dominant_num + 1,
                                                                            hidden_states.shape[2])
    metric_filtered = metric[mask].view(hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), metric.shape[2])
    hidden_states_filtered = hidden_states.masked_select(mask.unsqueeze(-1)).view(
        hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), hidden_states.shape[2])
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    step = max(1, metric_normalized.shape[1] // contextual_num)
    target_indices = torch.arange(0, metric_normalized.shape[1], step)[:contextual_num]
    target_tokens = metric_normalized[:, target_indices, :]
    tokens_to_merge = metric_normalized[:, ~torch.isin(torch.arange(metric_normalized.shape[1]), target_indices), :]
    similarity = torch.bmm(tokens_to_merge, target_tokens.transpose(1, 2))
    assign_one_hot = torch.zeros(tokens_to_merge.shape[0], tokens_to_merge.shape[1], contextual_num,
                                 dtype=hidden_states_filtered.dtype)
    assign_one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = assign_one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    hidden_to_merge = hidden_states_filtered[:, ~torch.isin(torch.arange(hidden_states_filtered.shape[1]), target_indices), :]
    aggregated_hidden = torch.bmm(assign_one_hot.transpose(1, 2), hidden_to_merge) / counts
    target_hidden = hidden_states_filtered[:, target_indices, :]
    contextual_tokens = target_hidden + aggregated_hidden
    return torch.cat([dominant_tokens, contextual_tokens], dim=1), all_indices


def reference_metric(hidden_states, k_proj, heads):
    """utils.CLIPAttention_forward's metric: the layer's key states [B, heads, L, d] averaged over heads."""
    bsz, length, dim = hidden_states.shape
    key_states = k_proj(hidden_states).view(bsz, length, heads, dim // heads).transpose(1, 2).contiguous()
    return key_states.mean(1)


@pytest.mark.parametrize("n,dominant,contextual", [(36, 9, 3), (576, 54, 10), (576, 162, 30), (50, 20, 29)])
def test_visionzip_matches_the_reference_arithmetic(n, dominant, contextual):
    """compkit's visionzip (patches only, CLS dropped) against the reference on random tokens, attention and keys:
    the same dominant patches and the same contextual tokens (target + mean of the merged tokens)."""
    b, d, heads = 2, 16, 4
    hidden = rand(b, 1 + n, d, seed=n)
    attn = torch.softmax(3 * rand(b, heads, 1 + n, 1 + n, seed=n + 1), dim=-1)
    k_proj = torch.nn.Linear(d, d)
    with torch.no_grad():
        metric = reference_metric(hidden, k_proj, heads)
        ref_tokens, ref_idx = reference_visionzip(hidden, attn, metric, dominant, contextual)
        score, keys = visionzip_signals(attn, k_proj(hidden), heads)
    torch.testing.assert_close(keys, metric[:, 1:], rtol=0, atol=0)
    idx, ctx = visionzip_select(hidden[:, 1:], k=dominant + contextual, contextual=contextual, attention=score, keys=keys)
    assert idx.tolist() == (ref_idx[:, 1:].sort(dim=1).values - 1).tolist()
    torch.testing.assert_close(hidden[:, 1:].gather(1, idx[..., None].expand(-1, -1, d)), ref_tokens[:, 1:dominant + 1],
                               rtol=0, atol=0)
    torch.testing.assert_close(ctx, ref_tokens[:, dominant + 1:], rtol=1e-5, atol=1e-6)


def test_visionzip_contextual_is_target_plus_mean_of_merged():
    # 12 tokens; 4 get high attention; the 8 others form two key clusters: {rest 0..3} and {rest 4..7}.
    x = rand(12, 5, seed=6)
    attention = torch.zeros(12)
    attention[[1, 4, 7, 10]] = torch.tensor([5.0, 9.0, 7.0, 6.0])
    attention[[0, 2]] = 1.0
    rest = [0, 2, 3, 5, 6, 8, 9, 11]
    keys = torch.zeros(12, 2)
    keys[rest[:4]] = torch.tensor([1.0, 0.1])
    keys[rest[4:]] = torch.tensor([0.1, 1.0])
    idx, ctx = visionzip_select(x, k=6, attention=attention, keys=keys, contextual=2)
    assert idx.tolist() == [1, 4, 7, 10]
    assert ctx.shape == (2, 5)
    # targets: rest[0] and rest[4]; each other remaining token joins the target of its key cluster
    torch.testing.assert_close(ctx[0], x[rest[0]] + x[rest[1:4]].mean(dim=0))
    torch.testing.assert_close(ctx[1], x[rest[4]] + x[rest[5:]].mean(dim=0))
    keys[rest[4:]] = torch.tensor([1.0, 0.1])  # one cluster: the second target gets nobody and stays itself
    _, ctx = visionzip_select(x, k=6, attention=attention, keys=keys, contextual=2)
    torch.testing.assert_close(ctx[1], x[rest[4]], rtol=0, atol=0)
    torch.testing.assert_close(ctx[0], x[rest[0]] + x[[r for r in rest if r not in (rest[0], rest[4])]].mean(dim=0))


def test_visionzip_signals_from_a_clip_tower_layer():
    """attention= and keys= straight from transformers' CLIP vision tower at layer -2, as VisionZip takes them."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                           image_size=24, patch_size=6, attn_implementation="eager")
    torch.manual_seed(0)
    tower = CLIPVisionModel(cfg).eval()
    layer = tower.encoder.layers[-2]  # transformers 5 flattened CLIPVisionModel (no .vision_model)
    captured = {}
    hook = layer.self_attn.k_proj.register_forward_hook(lambda m, i, o: captured.update(keys=o, inputs=i[0]))
    with torch.no_grad():
        out = tower(rand(1, 3, 24, 24, seed=3), output_attentions=True, output_hidden_states=True)
    hook.remove()
    score, keys = visionzip_signals(out.attentions[-2], captured["keys"], heads=4)
    assert score.shape == (1, 16) and keys.shape == (1, 16, 8)
    torch.testing.assert_close(score, out.attentions[-2][:, :, 0, 1:].sum(dim=1))
    with torch.no_grad():
        metric = reference_metric(captured["inputs"], layer.self_attn.k_proj, 4)
    torch.testing.assert_close(keys, metric[:, 1:])
    idx, ctx = visionzip_select(out.hidden_states[-2][:, 1:], k=8, attention=score, keys=keys, contextual=2)
    assert idx.shape == (1, 6) and ctx.shape == (1, 2, 32)
    with pytest.raises(ValueError, match="divisible by heads"):
        visionzip_signals(out.attentions[-2], captured["keys"], heads=5)


def test_visionzip_contextual_tokens_partition_the_rest():
    x, att = rand(2, 36, 6, seed=7), rand(2, 36, seed=8)
    idx, ctx = visionzip_select(x, ratio=3, attention=att)
    assert idx.shape == (2, 10) and ctx.shape == (2, 2, 6)
    for b in range(2):
        rest = [i for i in range(36) if i not in idx[b].tolist()]
        # Recompute VisionZip's grouping by brute force: targets are rest[0] and rest[len // 2];
        # every other token joins the target with the most similar key (here: the token itself).
        xn = F.normalize(x[b, rest], dim=-1)
        targets = [0, len(rest) // 2]
        groups = {t: [] for t in targets}
        for j in range(len(rest)):
            if j not in targets:
                groups[targets[int(torch.argmax(xn[targets] @ xn[j]))]].append(rest[j])
        for c, t in enumerate(targets):
            merged = x[b, groups[t]].mean(dim=0) if groups[t] else torch.zeros(6)
            torch.testing.assert_close(ctx[b, c], x[b, rest[t]] + merged)


def test_visionzip_errors():
    x = rand(10, 4)
    with pytest.raises(ValueError, match="attention"):
        visionzip_select(x, k=4)
    with pytest.raises(ValueError, match="one score per token"):
        visionzip_select(x, k=4, attention=torch.rand(9))
    with pytest.raises(ValueError, match="contextual"):
        visionzip_select(x, k=4, attention=torch.rand(10), contextual=4)
    idx, ctx = visionzip_select(x, k=4, attention=torch.arange(10.0), contextual=0)
    assert idx.tolist() == [6, 7, 8, 9] and ctx.shape == (0, 4)


# ---- FastV ---------------------------------------------------------------------------------------

def test_fastv_ranks_by_last_token_head_mean_attention():
    heads, length, start, n = 2, 12, 2, 6
    a = torch.full((heads, length, length), 1.0 / length)
    a[0, -1, start + 1] = 0.5  # head 0 loves image token 1
    a[1, -1, start + 4] = 0.3  # head 1 prefers token 4, but less
    a[:, 0, start + 5] = 0.9  # a non-last query: must be ignored
    assert fastv_scores(a, start, n).argmax().item() == 1
    assert fastv_select(torch.zeros(n, 4), k=2, attention=a, image_start=start).tolist() == [1, 4]
    batched = fastv_select(torch.zeros(2, n, 4), k=1, attention=torch.stack([a, a.flip(0)]), image_start=start)
    assert batched.tolist() == [[1], [1]]


def reference_fastv(last_layer_attention, start, length, keep):
    """pkunlp-icler/FastV's LlamaModel.forward (llava-hf transformers fork) at layer K, transcribed: layer K-1's
    attention averaged over heads, the last token's row over the image span, top `keep`, sorted."""
    last_layer_attention_avg = torch.mean(last_layer_attention, dim=1)[0]
    last_tok_image = last_layer_attention_avg[-1][start:start + length]
    return (last_tok_image.topk(keep).indices + start).sort().values - start


@pytest.mark.parametrize("n,keep", [(36, 12), (576, 144)])
def test_fastv_matches_the_reference_on_random_attention(n, keep):
    a = torch.softmax(4 * rand(1, 4, n + 20, n + 20, seed=n), dim=-1)
    assert fastv_select(torch.zeros(n, 8), k=keep, attention=a[0], image_start=5).tolist() == \
        reference_fastv(a, 5, n, keep).tolist()


def test_fastv_errors():
    a = torch.softmax(rand(2, 10, 10), dim=-1)
    with pytest.raises(ValueError, match="does not fit"):
        fastv_select(torch.zeros(8, 4), k=2, attention=a, image_start=5)
    with pytest.raises(ValueError, match="needs attention"):
        fastv_select(torch.zeros(8, 4), k=2)
    with pytest.raises(ValueError, match=r"\[heads, L, L\]"):
        fastv_select(torch.zeros(8, 4), k=2, attention=torch.rand(10, 10), image_start=0)
